"""Load a model (optionally with chat vectors applied in memory) and stream replies to a chat history."""
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .checkpoint import Checkpoint, load_config, resolve_model_dir
from .embeddings import checkpoint_to_model_key
from .errors import ChatVectorError
from .imports import heavy_imports
from .lineage import verify_lineage
from .merge import Merge, plan_merge
from .stream import Device, Dtype, output_dtype, resolve_device, row_ranges
from .tokenizer import load_tokenizer
from .vector import open_chat_vector
from .vocab import translate_ids
from .writer import TensorSpec


def load_chat_model(model_path: str, device: Device = "auto", dtype: Dtype = "auto", chat_vectors: list[str] = (),
                    ratios: list[float] | None = None, skip_embed: bool = False, special_tokens_map: dict | str | None = None,
                    align_vocab: bool = False, check_lineage: bool = True):
    """The model and tokenizer, with chat vectors added exactly as `add` would write them."""
    model, tokenizer, model_dir = load_model(model_path, device, dtype, need_template=not chat_vectors)
    if chat_vectors:
        chat_dir = apply_in_memory(model, model_dir, list(chat_vectors), ratios or [1.0], skip_embed, special_tokens_map or {}, align_vocab,
                                   tokenizer, check_lineage)
        if chat_dir is not None:
            adopt_vector_chat_setup(tokenizer, model, chat_dir)
    require_template(tokenizer, model_path)
    return model, tokenizer


def load_model(model_path: str, device: Device = "auto", dtype: Dtype = "auto", need_template: bool = True):
    """(model in eval mode, its tokenizer, its directory); a model that needs a template is checked before its weights load."""
    with heavy_imports():
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging
    if not sys.stderr.isatty():
        logging.disable_progress_bar()  # progress bars only on a terminal
    model_dir = resolve_model_dir(model_path, "model")
    run_device, torch_dtype = resolve_device(device, auto_gpu=True), output_dtype(dtype)
    tokenizer = load_tokenizer(model_dir, "model")
    if need_template:
        require_template(tokenizer, model_path)  # before spending time on the weights
    device_map = "auto" if device == "auto" and run_device.type == "cuda" else {"": run_device}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype or "auto", device_map=device_map)
    except Exception as e:
        raise ChatVectorError(f"cannot load {model_path} with transformers ({type(e).__name__}: {e})") from None
    return model.eval(), tokenizer, model_dir


def require_template(tokenizer, model_path: str) -> None:
    if not tokenizer.chat_template:
        raise ChatVectorError(f"{model_path} has no chat template; use a chat model, pass --chat_vector, "
                              "or add a chat_template to its tokenizer_config.json")


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


def adopt_vector_chat_setup(tokenizer, model, vector_dir: Path) -> None:
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
