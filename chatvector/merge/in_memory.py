"""Chat vectors added to a loaded model's weights in place, by the very rules `add` writes (chat --chat_vector, the sweep)."""
from pathlib import Path

import torch

from ..errors import ChatVectorError
from ..io.checkpoint import Checkpoint, load_config
from ..io.stream import row_ranges
from ..io.tokenizer_files import load_tokenizer
from ..io.writer import TensorSpec
from .embeddings import checkpoint_to_model_key
from .lineage import verify_lineage
from .plan import Merge, plan_merge
from .vector import open_chat_vector


def apply_in_memory(model: torch.nn.Module, model_dir: Path, paths: list[str], ratios: list[float], skip_embed: bool,
                    special_tokens_map: dict | str, align_vocab: bool = False, tokenizer=None, check_lineage: bool = True) -> Path | None:
    """Merge each weight in place with the very rules `add` uses; returns the last vector's chat model directory."""
    with InMemoryMerge(model, model_dir, paths, skip_embed, special_tokens_map, align_vocab, tokenizer) as merge:
        merge.check(len(ratios), check_lineage)
        merge.apply(ratios)
        return merge.chat_dir


class InMemoryMerge:
    """Chat vectors applied to a loaded model, at any ratios, as often as asked (the sweep).

    Every `apply` recomputes the merged weights from the CP's weights on disk, a chunk of rows at a time,
    so nothing drifts from one ratio to the next and no second copy of the model is held."""

    def __init__(self, model: torch.nn.Module, model_dir: Path, paths: list[str], skip_embed: bool, special_tokens_map: dict | str,
                 align_vocab: bool = False, tokenizer=None):
        self.model, self.model_dir, self.skip_embed, self.align_vocab = model, model_dir, skip_embed, align_vocab
        self.special_tokens_map = special_tokens_map
        self.config = load_config(model_dir, "model")
        self.stored = Checkpoint(model_dir)  # the CP's own weights: the starting point of every apply
        self.vectors = []
        try:
            for path in paths:
                self.vectors.append(open_chat_vector(path, cp=(model_dir, self.config)))
        except BaseException:
            self.close()
            raise
        self._tokenizers = None
        self._tokenizer = tokenizer
        self.chat_dir = self.vectors[-1].chat_dir

    def tokenizers(self):
        if self._tokenizers is None:
            self._tokenizers = (self._tokenizer or load_tokenizer(self.model_dir, "model"),
                                [load_tokenizer(v.chat_dir or self.model_dir, "chat vector") for v in self.vectors])
        return self._tokenizers

    def check(self, ratio_count: int, check_lineage: bool = True) -> dict[str, str]:
        """Everything add checks, before any weight changes; returns the lineage verdicts."""
        if ratio_count != len(self.vectors):
            raise ChatVectorError(f"--ratio has {ratio_count} values for {len(self.vectors)} chat vectors; give one ratio per chat vector")
        self._plan([1.0] * len(self.vectors))
        if not check_lineage:
            return {v.path: "not checked (--check_lineage False)" for v in self.vectors}
        return verify_lineage(self.stored, self.vectors, "model")

    def _plan(self, ratios: list[float]) -> Merge:
        # all-zero ratios leave the CP as it is, special rows included (add refuses a special-token map there)
        token_map = self.special_tokens_map if any(ratios) else {}
        merge = plan_merge(self.stored.infos, self.config, self.vectors, ratios, self.skip_embed, token_map,
                           next(self.model.parameters()).device, self.align_vocab, self.tokenizers, quiet=self._tokenizers is not None)
        if token_map == "auto":
            self.special_tokens_map = merge.token_map  # resolved once; later plans reuse it silently
        return merge

    @torch.no_grad()
    def apply(self, ratios: list[float]) -> None:
        merge = self._plan(list(ratios))
        params = dict(self.model.named_parameters(remove_duplicate=False))
        to_model_key = checkpoint_to_model_key(self.model)
        done = set()
        for name in sorted(merge.names):
            param = params.get(to_model_key(name))
            if param is None or id(param) in done:
                continue
            done.add(id(param))
            for start, stop in row_ranges(TensorSpec(name, param.dtype, tuple(param.shape))):
                rows = param.data[start:stop] if param.dim() else param.data
                cp_rows = self.stored.read(name, start, stop) if param.dim() else self.stored.read(name)
                rows.copy_(merge.rows(name, start, stop, cp_rows.to(rows.device), param.dtype))

    def close(self) -> None:
        for vector in self.vectors:
            vector.close()
        self.stored.close()

    def __enter__(self) -> "InMemoryMerge":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
