"""Load a model (optionally with chat vectors applied in memory) and stream replies to a chat history."""
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import ChatVectorError
from ..imports import heavy_imports
from ..io.checkpoint import resolve_model_dir
from ..io.stream import Device, Dtype, output_dtype, resolve_device
from ..io.tokenizer_files import load_tokenizer
from ..merge.in_memory import InMemoryMerge, apply_in_memory
from ..merge.vocab import translate_ids
from .replies import Reply, has_loop


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


def adopt_vector_chat_setup(tokenizer, model, vector_dir: Path) -> None:
    """Like `add`: the chat model's template (when the model has none) and its end-of-turn ids."""
    extra = vector_chat_setup(tokenizer, vector_dir)
    model.generation_config.eos_token_id = sorted(set(_as_list(model.generation_config.eos_token_id)) | set(extra))


def vector_chat_setup(tokenizer, vector_dir: Path) -> list[int]:
    """The chat model's template given to `tokenizer` when it has none; the chat model's end-of-turn ids in its ids."""
    from transformers import GenerationConfig

    chat_tokenizer = load_tokenizer(vector_dir, "chat vector")
    if not tokenizer.chat_template and chat_tokenizer.chat_template:
        tokenizer.chat_template = chat_tokenizer.chat_template
    chat_ids = [chat_tokenizer.eos_token_id]
    if (vector_dir / "generation_config.json").is_file():
        chat_ids += _as_list(GenerationConfig.from_pretrained(vector_dir).eos_token_id)
    extra, _ = translate_ids([i for i in chat_ids if i is not None], chat_tokenizer, tokenizer)  # to this model's ids
    return extra


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


@torch.no_grad()
def generate_replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int, eos_ids: list[int],
                     options: dict) -> list[Reply]:
    """One batch, greedy unless `options` say otherwise; rows are padded on the left so every reply starts at once."""
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if pad is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
    try:  # the template writes the special tokens (bos) itself, as apply_chat_template does
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad_id, **options)
    stops = set(eos_ids)
    replies = []
    for row in output[:, inputs["input_ids"].shape[1]:].tolist():
        end = next((i for i, token in enumerate(row) if token in stops), None)
        ids = row if end is None else row[:end]
        text = tokenizer.decode(ids, skip_special_tokens=True).strip()
        replies.append(Reply(text, len(ids), end is not None, has_loop(ids)))
    return replies


class HFEngine:
    """transformers' `generate` on the CP loaded once; at each ratio the chat vectors are merged into its weights in place,
    by the very rules `add` writes (merge/in_memory.py). Everything `add` checks is checked when it opens."""

    name = "hf"

    def __init__(self, cp_model_path: str, chat_vector_paths: list[str], ratio_count: int, device: Device = "auto", dtype: Dtype = "auto",
                 skip_embed: bool = False, special_tokens_map: dict | str | None = None, align_vocab: bool = False,
                 check_lineage: bool = True, generation: dict | None = None):
        self.model, self.tokenizer, model_dir = load_model(cp_model_path, device, dtype, need_template=False)
        self.merge = InMemoryMerge(self.model, model_dir, chat_vector_paths, skip_embed, special_tokens_map or {}, align_vocab, self.tokenizer)
        try:
            self.merge.check(ratio_count, check_lineage)
            if self.merge.chat_dir is not None:
                adopt_vector_chat_setup(self.tokenizer, self.model, self.merge.chat_dir)
            require_template(self.tokenizer, cp_model_path)
            self.eos = stop_ids(self.model, self.tokenizer)
            if not self.eos:
                raise ChatVectorError(f"{cp_model_path} and the chat vector's model define no end-of-turn token; "
                                      "set eos_token_id in generation_config.json")
        except BaseException:
            self.merge.close()
            raise
        self.generation = generation_options(generation or {})

    def set_ratio(self, ratios: list[float]) -> None:
        self.merge.apply(ratios)

    def generate(self, conversations: list[list[dict]], max_new_tokens: int) -> list[Reply]:
        return generate_replies(self.model, self.tokenizer, conversations, max_new_tokens, self.eos, self.generation)

    def close(self) -> None:
        self.merge.close()

    def __enter__(self) -> "HFEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
