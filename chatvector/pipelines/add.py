"""add: W = W_cp + sum_i ratio_i * CV_i[W], streamed tensor by tensor into a loadable checkpoint."""
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import __version__
from ..errors import ChatVectorError
from ..io.checkpoint import Checkpoint, load_config, resolve_model_dir
from ..io.headstart import HeadStart
from ..io.outdir import atomic_output_dir
from ..io.stream import Device, Dtype, OutputTensor, output_dtype, resolve_device, seed_of, write_tensors
from ..io.tokenizer_files import load_tokenizer, read_tokenizer_files
from ..io.writer import TensorSpec
from ..merge.lineage import verify_lineage
from ..merge.plan import Merge, needs_token_matching, plan_merge
from ..merge.vector import open_chat_vector
from ..merge.vocab import untrained_template_tokens, warn_untrained
from .model_files import write_model_files
from .modelcard import load_card_library, write_merge_card


def add(cp_model_path: str, chat_vector_paths: list[str], output_path: str, ratios: list[float] | None = None,
        skip_embed: bool = False, special_tokens_map: dict | str | None = None, dtype: Dtype = "auto", device: Device = "auto",
        max_shard_size: str | int = "5GB", overwrite: bool = False, command: str | None = None, align_vocab: bool = False,
        check_lineage: bool = True, card_notes: str | None = None, head: HeadStart | None = None) -> Path:
    """Add ratio-weighted chat vectors to a CP model and write a Hugging Face checkpoint.

    Args:
        cp_model_path: the continually pre-trained model (local directory or hub id).
        chat_vector_paths: directories written by `extract`.
        output_path: the output directory.
        ratios: one per chat vector; default [1] for a single vector.
        skip_embed: keep the CP's input-embedding and output-head rows.
        special_tokens_map: {cp_token: chat_token} by id or token string, or 'auto': these rows become the
            chat models' (ratio-weighted mean).
        dtype: output dtype; 'auto' keeps each of the CP's tensors in its own dtype.
        device: where the arithmetic runs: 'cpu', 'cuda' or 'auto'.
        max_shard_size: largest shard, e.g. '5GB'.
        overwrite: replace a non-empty output_path.
        command: the command line, recorded in the model card.
        align_vocab: match embedding and output-head rows by token string between the CP and chat tokenizers.
        check_lineage: refuse a CP that does not descend from a vector's base (compared on the vector's base fingerprint).
        card_notes: markdown appended to the model card (the sweep's table, for --write_best).
        head: the output's files as the command began copying them before torch was imported (io/headstart.py).
    """
    ratios = [1.0] * len(chat_vector_paths) if ratios is None and len(chat_vector_paths) == 1 else ratios
    if not chat_vector_paths or ratios is None or len(ratios) != len(chat_vector_paths):
        raise ChatVectorError(f"give one ratio per chat vector: {len(chat_vector_paths)} chat vector(s), ratios {ratios}")
    cp_dir = resolve_model_dir(cp_model_path, "CP model")
    dtype_override, run_device = output_dtype(dtype), resolve_device(device)
    cp_config = load_config(cp_dir, "CP model")
    pin = run_device.type == "cuda"
    vectors = [open_chat_vector(p, pin_memory=pin, cp=(cp_dir, cp_config)) for p in chat_vector_paths]
    chat_dirs = [v.chat_dir or cp_dir for v in vectors]  # a reference vector whose chat model is gone: the CP's own
    light = None if needs_token_matching(align_vocab, special_tokens_map or {}) else read_tokenizer_files([cp_dir, *chat_dirs])
    try:
        with Checkpoint(cp_dir, pin_memory=pin) as cp, ThreadPoolExecutor(max_workers=1, thread_name_prefix="transformers") as side:
            # otherwise transformers takes seconds to import: load the tokenizers while the weights stream
            tokenizers = side.submit(lambda: (light[0], light[1:]) if light else
                                     (load_tokenizer(cp_dir, "CP model"), [load_tokenizer(d, "chat vector") for d in chat_dirs]))
            if light:  # with transformers loading on the side thread, the card library comes with it
                side.submit(load_card_library)
            merge = plan_merge(cp.infos, cp_config, vectors, ratios, skip_embed, special_tokens_map or {}, run_device,
                               align_vocab, tokenizers.result)
            lineage = verify_lineage(cp, vectors) if check_lineage else {v.path: "not checked (--check_lineage False)" for v in vectors}
            outputs = [_merged_tensor(name, cp, merge, dtype_override) for name in cp.infos]
            inputs = [cp_dir, *[v.dir for v in vectors]]
            untrained = side.submit(_untrained_tokens, cp, vectors[-1], tokenizers, merge)  # while the weights stream
            with atomic_output_dir(Path(output_path), overwrite, inputs, head and head.partial) as tmp:
                write_tensors(tmp, "model", outputs, max_shard_size, "add", head)
                if head is not None:
                    head.release()
                cp_tokenizer, chat_tokenizers = tokenizers.result()
                written_by = write_model_files(cp_dir, chat_dirs[-1], cp_config, cp_tokenizer, chat_tokenizers[-1],
                                               dtype if dtype_override else None, tmp)
                warn_untrained(untrained.result())
                alignment = next(iter(merge.alignments.values()), None)
                record = _record(cp_model_path, vectors, ratios, skip_embed, _as_given(special_tokens_map, merge.token_map), dtype,
                                 align_vocab, alignment)
                record["options"]["lineage"] = lineage
                record["written_by"] = written_by
                write_merge_card(tmp, Path(output_path).name, record, command, card_notes)
    finally:
        for vector in vectors:
            vector.close()
    return Path(output_path)


def _merged_tensor(name: str, cp: Checkpoint, merge: Merge, dtype_override) -> OutputTensor:
    """One merged weight. On the CPU in the CP's dtype, the CP's bytes are copied into the output in the kernel
    and the merged rows computed over them (same arithmetic, same bits); a weight the merge leaves alone is just copied."""
    info = cp.infos[name]
    dtype = dtype_override if dtype_override is not None and info.is_float else info.dtype
    def compute(start: int, stop: int, into):
        return merge.rows(name, start, stop, cp.read(name, start, stop), dtype, out=into)

    seed = seed_of(cp, name) if merge.workspace.device.type == "cpu" and dtype == info.dtype else None
    return OutputTensor(TensorSpec(name, dtype, info.shape), compute, seed, seed_is_result=not merge.changes(name))


def _untrained_tokens(cp: Checkpoint, vector, tokenizers, merge: Merge) -> list[str]:
    """merge/vocab.py's check of the last vector's template tokens: it reads the inputs only, so it runs beside the weights
    (0.045 s of add's tail here). A reference-format vector has no chat rows to compare with."""
    if vector.chat_embeddings is None:
        return []
    cp_tokenizer, chat_tokenizers = tokenizers.result()
    return untrained_template_tokens(cp, vector, cp_tokenizer, chat_tokenizers[-1], _changed_rows(merge, vector))


def _changed_rows(merge: Merge, vector) -> set[int]:
    return set(merge.special_rows.get(vector.embeddings.input, {}))


def _as_given(option, applied: dict):
    """What the card records for --special_tokens_map: the map applied, and that `auto` chose it."""
    return f"auto: {applied}" if option == "auto" else applied


def _record(cp_model_path, vectors, ratios, skip_embed, special_tokens_map, dtype, align_vocab, alignments) -> dict:
    options = {"skip_embed": skip_embed, "align_vocab": align_vocab, "special_tokens_map": special_tokens_map, "dtype": dtype}
    if alignments:
        options["vocabulary rows (first chat vector)"] = alignments[0].summary()
    return {
        "cp_model": str(cp_model_path),
        "chat_vectors": [
            {"path": v.path, "base_model": v.meta["base_model"], "chat_model": v.meta["chat_model"], "ratio": r}
            for v, r in zip(vectors, ratios)
        ],
        "options": options,
        "tool_version": __version__,
    }
