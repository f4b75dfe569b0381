"""Inside each vLLM worker process: the merge rules streamed from the checkpoint files into the worker's running model.

vLLM mixes `ChatVectorWorker` into its worker class (`worker_extension_cls`), in every tensor-parallel worker;
the engine calls its `cv_` methods through `collective_rpc` with plain arguments only (paths, flags, ratios), so
nothing is pickled. Each worker computes every merged tensor with the very code `add` writes with
(merge/plan.py) and hands it to the model runner's `reload_weights`, which shards it for this worker and
re-runs the post-load processing (on the CPU, vLLM repacks each linear weight: a plain `load_weights` into the
packed model fails). One tensor is whole in memory at a time; the CP is read from its files at each ratio, so
nothing drifts from one ratio to the next.
"""
import json
import time
from collections.abc import Iterator

import torch

from ..io.checkpoint import Checkpoint, load_config
from ..io.stream import output_dtype, row_ranges
from ..io.tokenizer_files import load_tokenizer
from ..io.writer import TensorSpec
from ..merge.plan import Merge, plan_merge
from ..merge.vector import open_chat_vector


class ChatVectorWorker:
    """Methods vLLM adds to its worker (their names must not clash with the worker's own: hence `cv_`)."""

    def cv_open(self, cp_dir: str, vector_paths: list[str], skip_embed: bool, special_tokens_map: str, align_vocab: bool,
                dtype: str) -> dict:
        """Open the CP's and the vectors' files for the ratios to come; `special_tokens_map` is the map as the engine resolved
        it, as JSON pairs (token ids or strings)."""
        self._cv_device = torch.device(self.device) if str(self.device).startswith("cuda") else torch.device("cpu")
        config = load_config(cp_dir, "CP model")
        self._cv_cp = Checkpoint(cp_dir, pin_memory=self._cv_device.type == "cuda")
        self._cv_vectors = [open_chat_vector(path, pin_memory=self._cv_device.type == "cuda", cp=(cp_dir, config)) for path in vector_paths]
        self._cv_config, self._cv_dtype = config, output_dtype(dtype)
        self._cv_options = (skip_embed, {k: v for k, v in json.loads(special_tokens_map)}, align_vocab)
        self._cv_tokenizers = None
        return {"rank": self.rank, "tensors": len(self._cv_cp.infos)}

    def cv_load(self, ratios: list[float]) -> dict:
        """The model's weights become CP + sum_i ratios[i] * CV_i, exactly as `add` writes them."""
        started = time.perf_counter()
        merge = self._cv_plan([float(r) for r in ratios])
        counts = {"tensors": 0, "changed": 0, "merge_seconds": 0.0}
        self.model_runner.reload_weights(weights_iterator=self._cv_tensors(merge, counts), is_checkpoint_format=True)
        counts["merge_seconds"] = round(counts["merge_seconds"], 4)  # reading and arithmetic; the rest is vLLM's loading
        return {"rank": self.rank, **counts, "seconds": round(time.perf_counter() - started, 4)}

    def _cv_plan(self, ratios: list[float]) -> Merge:
        skip_embed, token_map, align_vocab = self._cv_options
        token_map = token_map if any(ratios) else {}  # all-zero ratios are the CP as it is, special rows included
        return plan_merge(self._cv_cp.infos, self._cv_config, self._cv_vectors, ratios, skip_embed, token_map, self._cv_device,
                          align_vocab, self._cv_load_tokenizers, quiet=True)

    def _cv_load_tokenizers(self):
        if self._cv_tokenizers is None:
            cp_dir = self._cv_cp.dir
            self._cv_tokenizers = (load_tokenizer(cp_dir, "CP model"),
                                   [load_tokenizer(v.chat_dir or cp_dir, "chat vector") for v in self._cv_vectors])
        return self._cv_tokenizers

    def _cv_tensors(self, merge: Merge, counts: dict) -> Iterator[tuple[str, torch.Tensor]]:
        """(checkpoint name, whole merged tensor), one at a time in file order; a weight the merge leaves alone as stored."""
        cp = self._cv_cp
        for name, info in cp.infos.items():
            started = time.perf_counter()
            counts["tensors"] += 1
            dtype = self._cv_dtype if self._cv_dtype is not None and info.is_float else info.dtype
            if not merge.changes(name) and dtype == info.dtype:
                tensor = cp.read(name)
                counts["merge_seconds"] += time.perf_counter() - started
                yield name, tensor
                continue
            counts["changed"] += 1
            out = torch.empty(info.shape, dtype=dtype, device=self._cv_device)
            for start, stop in row_ranges(TensorSpec(name, info.dtype, info.shape)):
                rows = out[start:stop] if info.shape else out
                merge.rows(name, start, stop, cp.read(name, start, stop), dtype, out=rows)
            counts["merge_seconds"] += time.perf_counter() - started
            yield name, out
