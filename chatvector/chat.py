"""Load a model (optionally with chat vectors applied in memory) and stream replies to a chat history."""
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .checkpoint import Checkpoint, load_config, resolve_model_dir
from .embeddings import checkpoint_to_model_key
from .errors import ChatVectorError
from .lineage import verify_lineage
from .merge import plan_merge
from .stream import Device, Dtype, output_dtype, resolve_device, row_ranges
from .tokenizer import load_tokenizer
from .vector import open_chat_vector
from .vocab import translate_ids
from .writer import TensorSpec


def load_chat_model(model_path: str, device: Device = "auto", dtype: Dtype = "auto", chat_vectors: list[str] = (),
                    ratios: list[float] | None = None, skip_embed: bool = False, special_tokens_map: dict | str | None = None,
                    align_vocab: bool = False, check_lineage: bool = True):
    """The model and tokenizer, with chat vectors added exactly as `add` would write them."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    if not sys.stderr.isatty():
        logging.disable_progress_bar()  # progress bars only on a terminal
    model_dir = resolve_model_dir(model_path, "model")
    run_device, torch_dtype = resolve_device(device, auto_gpu=True), output_dtype(dtype)
    tokenizer = load_tokenizer(model_dir, "model")
    if not chat_vectors:
        _require_template(tokenizer, model_path)  # before spending time on the weights
    device_map = "auto" if device == "auto" and run_device.type == "cuda" else {"": run_device}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype or "auto", device_map=device_map)
    except Exception as e:
        raise ChatVectorError(f"cannot load {model_path} with transformers ({type(e).__name__}: {e})") from None
    if chat_vectors:
        chat_dir = apply_in_memory(model, model_dir, list(chat_vectors), ratios or [1.0], skip_embed, special_tokens_map or {}, align_vocab,
                                   tokenizer, check_lineage)
        if chat_dir is not None:
            _adopt_vector_chat_setup(tokenizer, model, chat_dir)
    _require_template(tokenizer, model_path)
    return model.eval(), tokenizer


def _require_template(tokenizer, model_path: str) -> None:
    if not tokenizer.chat_template:
        raise ChatVectorError(f"{model_path} has no chat template; use a chat model, pass --chat_vector, "
                              "or add a chat_template to its tokenizer_config.json")


@torch.no_grad()
def apply_in_memory(model: torch.nn.Module, model_dir: Path, paths: list[str], ratios: list[float], skip_embed: bool,
                    special_tokens_map: dict | str, align_vocab: bool = False, tokenizer=None, check_lineage: bool = True) -> Path | None:
    """Merge each weight in place, a chunk of rows at a time, with the very rules `add` uses.

    Returns the directory of the last vector's chat model (its template and end-of-turn ids), if it has one."""
    if len(ratios) != len(paths):
        raise ChatVectorError(f"--ratio has {len(ratios)} values for {len(paths)} chat vectors; give one ratio per chat vector")
    config = load_config(model_dir, "model")
    vectors = [open_chat_vector(p, cp=(model_dir, config)) for p in paths]
    params = dict(model.named_parameters(remove_duplicate=False))
    to_model_key = checkpoint_to_model_key(model)
    try:
        with Checkpoint(model_dir) as stored:  # headers only: the checkpoint's names, shapes and dtypes
            tokenizers = lambda: (tokenizer or load_tokenizer(model_dir, "model"),  # noqa: E731
                                  [load_tokenizer(v.chat_dir or model_dir, "chat vector") for v in vectors])
            merge = plan_merge(stored.infos, config, vectors, ratios, skip_embed, special_tokens_map,
                               next(model.parameters()).device, align_vocab, tokenizers)
            if check_lineage:
                verify_lineage(stored, vectors, "model")
            done = set()
            for name in sorted(merge.names):
                param = params.get(to_model_key(name))
                if param is None or id(param) in done:
                    continue
                done.add(id(param))
                for start, stop in row_ranges(TensorSpec(name, param.dtype, tuple(param.shape))):
                    rows = param.data[start:stop] if param.dim() else param.data
                    rows.copy_(merge.rows(name, start, stop, rows, param.dtype))
        return vectors[-1].chat_dir
    finally:
        for vector in vectors:
            vector.close()


def _adopt_vector_chat_setup(tokenizer, model, vector_dir: Path) -> None:
    """Like `add`: the chat model's template (when the model has none) and its end-of-turn ids."""
    from transformers import GenerationConfig

    chat_tokenizer = load_tokenizer(vector_dir, "chat vector")
    if not tokenizer.chat_template and chat_tokenizer.chat_template:
        tokenizer.chat_template = chat_tokenizer.chat_template
    chat_ids = [chat_tokenizer.eos_token_id]
    if (vector_dir / "generation_config.json").is_file():
        chat_ids += _as_list(GenerationConfig.from_pretrained(vector_dir).eos_token_id)
    extra, _ = translate_ids([i for i in chat_ids if i is not None], chat_tokenizer, tokenizer)  # to this model's ids
    model.generation_config.eos_token_id = sorted(set(_as_list(model.generation_config.eos_token_id)) | set(extra))


def _as_list(ids) -> list[int]:
    return [] if ids is None else [ids] if isinstance(ids, int) else list(ids)


def stop_ids(model, tokenizer) -> list[int]:
    """Every end-of-turn id the generation config and the tokenizer know; nothing hard-coded."""
    ids = set(_as_list(model.generation_config.eos_token_id)) | set(_as_list(tokenizer.eos_token_id))
    return sorted(ids)


def generation_options(options: dict) -> dict:
    """Pass-through generation options, checked against GenerationConfig; greedy unless asked otherwise."""
    from transformers import GenerationConfig

    known = set(GenerationConfig().to_dict())
    unknown = sorted(set(options) - known)
    if unknown:
        raise ChatVectorError(f"unknown generation option --{unknown[0]}; see transformers' GenerationConfig for the options")
    return {"do_sample": False, **options}


def make_reply_fn(model, tokenizer, write: Callable[[str], None], stats: Callable[[str], None], max_new_tokens: int,
                  options: dict) -> Callable[[list[dict]], str]:
    """A reply function for `chat_loop`: streams text through `write`, then a timing line through `stats`."""
    from transformers import TextStreamer

    class _Streamer(TextStreamer):  # TextStreamer holds text back to word / CJK boundaries; we only redirect it
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            self.pieces.append(text)
            write(text + ("\n" if stream_end else ""))

    eos = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0] if eos else None

    def reply(history: list[dict]) -> str:
        inputs = tokenizer.apply_chat_template(history, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        streamer = _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        streamer.pieces = []
        started = time.perf_counter()
        output = model.generate(**inputs, streamer=streamer, max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad, **options)
        elapsed = time.perf_counter() - started
        new_tokens = output.shape[-1] - inputs["input_ids"].shape[-1]
        stats(f"[{new_tokens} tokens in {elapsed:.2f} s, {new_tokens / max(elapsed, 1e-9):.1f} tokens/s]\n")
        return "".join(streamer.pieces).strip()

    return reply


def terminal_io(interactive: bool):
    """read_line/write/stats for a terminal (colours, prompt) or a pipe (plain lines, stats on stderr)."""
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        stats = lambda text: write(f"\033[2m{text}\033[0m")  # noqa: E731
        return input, write, stats, "\033[1;32m>>> \033[0m"

    def read_line(_prompt: str) -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    return read_line, write, (lambda text: print(text, end="", file=sys.stderr, flush=True)), ""
