"""The files beside an output's weights: config.json, generation_config.json and the tokenizer, carried from the inputs."""
import json
import shutil
import sys
from pathlib import Path

from ..io.tokenizer_files import TokenizerFiles, copy_tokenizer_files
from ..merge.vocab import translate_ids


def write_output_tokenizer_files(cp: TokenizerFiles, chat: TokenizerFiles, out_dir: Path) -> None:
    """The CP's tokenizer files as they are, with the chat model's template and (if the CP has it) eos token."""
    copy_tokenizer_files(cp.dir, out_dir)
    config = dict(cp.config)
    if chat.chat_template:
        config.pop("chat_template", None)  # the template lives in chat_template.jinja, as transformers saves it
        (out_dir / "chat_template.jinja").write_text(chat.chat_template)
    if adopted_eos(cp, chat):
        config["eos_token"] = chat.eos_token
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def output_tokenizer(tokenizer, chat):
    """The CP's tokenizer (every CP token keeps its id) given the chat model's template and eos token."""
    if chat.chat_template:
        tokenizer.chat_template = chat.chat_template
    if adopted_eos(tokenizer, chat):
        tokenizer.eos_token = chat.eos_token
    return tokenizer


def adopted_eos(cp, chat) -> bool:
    """Whether the output takes the chat model's eos token: it differs from the CP's and the CP's vocabulary has it."""
    if not chat.eos_token or chat.eos_token == cp.eos_token:
        return False
    if chat.eos_token not in cp.get_vocab():
        print(f"warning: the chat model's eos token {chat.eos_token!r} is not in the CP tokenizer; keeping the CP's {cp.eos_token!r}", file=sys.stderr)
        return False
    return True


def write_generation_config(chat_dir: Path, cp_dir: Path, chat_tokenizer, cp_tokenizer, out_dir: Path) -> None:
    """The chat model's generation config with its special-token ids translated to the CP's ids by token string."""
    source = chat_dir if (chat_dir / "generation_config.json").is_file() else cp_dir
    if not (source / "generation_config.json").is_file():
        return
    config = json.loads((source / "generation_config.json").read_text())
    if source == chat_dir:
        for key in ("eos_token_id", "bos_token_id", "pad_token_id"):
            ids = config.get(key)
            if ids is None:
                continue
            kept, missing = translate_ids([ids] if isinstance(ids, int) else ids, chat_tokenizer, cp_tokenizer)
            if missing:
                print(f"warning: generation config {key}: the CP tokenizer lacks {missing}; dropped", file=sys.stderr)
            config[key] = kept[0] if len(kept) == 1 and isinstance(ids, int) else kept if kept else None
    (out_dir / "generation_config.json").write_text(json.dumps(config, indent=2) + "\n")


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
