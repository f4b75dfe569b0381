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


def save_chat_tokenizer(chat_dir: Path, out_dir: Path) -> None:
    """The chat model's tokenizer and template, so a chat vector directory is self-contained."""
    load_tokenizer(chat_dir, "chat model").save_pretrained(out_dir)


def save_output_tokenizer(cp_dir: Path, vector_dir: Path, out_dir: Path) -> None:
    """The CP's tokenizer (every CP token keeps its id) with the chat model's template and eos token."""
    tokenizer = load_tokenizer(cp_dir, "CP model")
    chat = load_tokenizer(vector_dir, "chat vector")
    if chat.chat_template:
        tokenizer.chat_template = chat.chat_template
    if chat.eos_token and chat.eos_token != tokenizer.eos_token:
        if chat.eos_token in tokenizer.get_vocab():
            tokenizer.eos_token = chat.eos_token
        else:
            print(f"warning: the chat model's eos token {chat.eos_token!r} is not in the CP tokenizer; keeping the CP's {tokenizer.eos_token!r}", file=sys.stderr)
    tokenizer.save_pretrained(out_dir)


def copy_generation_config(sources: list[Path], out_dir: Path) -> None:
    """The first source that has a generation_config.json wins."""
    for source in sources:
        path = Path(source) / "generation_config.json"
        if path.is_file():
            shutil.copyfile(path, out_dir / "generation_config.json")
            return


def write_config(config: dict, dtype_name: str | None, out_dir: Path) -> None:
    """config.json as given, with its dtype set to the one written (left alone for --dtype auto)."""
    config = dict(config)
    if dtype_name:
        config["dtype"] = dtype_name
        config.pop("torch_dtype", None)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
