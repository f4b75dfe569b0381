"""Carry tokenizers, chat templates, eos tokens and generation configs between models."""
import json
import shutil
import sys
from pathlib import Path

from .errors import ChatVectorError


def load_tokenizer(model_dir: Path, what: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_dir)
    except Exception as e:
        raise ChatVectorError(f"cannot load the tokenizer of the {what} {model_dir} ({type(e).__name__}); it needs its tokenizer files") from None


def output_tokenizer(tokenizer, chat):
    """The CP's tokenizer (every CP token keeps its id) given the chat model's template and eos token."""
    if chat.chat_template:
        tokenizer.chat_template = chat.chat_template
    if chat.eos_token and chat.eos_token != tokenizer.eos_token:
        if chat.eos_token in tokenizer.get_vocab():
            tokenizer.eos_token = chat.eos_token
        else:
            print(f"warning: the chat model's eos token {chat.eos_token!r} is not in the CP tokenizer; keeping the CP's {tokenizer.eos_token!r}", file=sys.stderr)
    return tokenizer


def write_generation_config(vector_dir: Path, cp_dir: Path, chat_tokenizer, cp_tokenizer, out_dir: Path) -> None:
    """The chat model's generation config with its special-token ids translated to the CP's ids by token string."""
    from transformers import GenerationConfig

    source = vector_dir if (vector_dir / "generation_config.json").is_file() else cp_dir
    if not (source / "generation_config.json").is_file():
        return
    config = GenerationConfig.from_pretrained(source)
    if source == vector_dir:
        from .vocab import translate_ids

        for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
            ids = getattr(config, key)
            if ids is None:
                continue
            kept, missing = translate_ids([ids] if isinstance(ids, int) else ids, chat_tokenizer, cp_tokenizer)
            if missing:
                print(f"warning: generation config {key}: the CP tokenizer lacks {missing}; dropped", file=sys.stderr)
            setattr(config, key, (kept[0] if len(kept) == 1 and isinstance(ids, int) else kept) or None)
    config.save_pretrained(out_dir)


def copy_generation_config(model_dir: Path, out_dir: Path) -> None:
    """The chat model's generation config (its end-of-turn ids), when it has one."""
    path = Path(model_dir) / "generation_config.json"
    if path.is_file():
        shutil.copyfile(path, out_dir / "generation_config.json")


def write_config(config: dict, dtype_name: str | None, out_dir: Path) -> None:
    """config.json as given, with its dtype set to the one written (left alone for --dtype auto)."""
    config = dict(config)
    if dtype_name:
        config["dtype"] = dtype_name
        config.pop("torch_dtype", None)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
