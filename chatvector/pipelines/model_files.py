"""The files beside an output's weights: config.json, generation_config.json and the tokenizer, carried from the inputs.

One write path, whatever the options: the CP's files as its own transformers version wrote them, edited only
where the merge must change them (the chat model's template, its eos token, the dtype written), so that the
output loads wherever the CP loaded (transformers 4.x and 5, vLLM, tools that read the files). No tokenizer is
re-saved: transformers 5 would write its own class name (`TokenizersBackend`) and its loader state.
"""
import json
import shutil
import sys
from pathlib import Path

from ..io.tokenizer_files import copy_tokenizer_files
from ..merge.vocab import translate_ids

TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")  # besides tokenizer_config.json's "chat_template"
TEMPLATE_FOLDER = "additional_chat_templates"  # transformers 5's named templates, one .jinja file each
SPECIAL = ("bos", "eos", "pad")
DTYPE_KEY_SINCE = (4, 56)  # transformers versions before this read `torch_dtype`, not `dtype`


def write_model_files(cp_dir: Path, chat_dir: Path, cp_config: dict, cp_tokenizer, chat_tokenizer, dtype_name: str | None,
                      out_dir: Path) -> dict[str, str | None]:
    """config.json, generation_config.json and the tokenizer of a merged model, consistent with each other: the
    same eos, bos and pad in every file that states one. Returns which transformers version wrote each file."""
    eos = chat_tokenizer.eos_token if adopted_eos(cp_tokenizer, chat_tokenizer) else None
    write_output_tokenizer(cp_dir, chat_dir, eos, out_dir)
    ids = _special_ids(out_dir, cp_tokenizer)
    generation = write_generation_config(chat_dir, cp_dir, chat_tokenizer, cp_tokenizer, ids, out_dir)
    stated = {key: value for key, value in (generation or {}).items() if key in ids and value is not None}
    write_config(cp_config, dtype_name, {**ids, **stated}, out_dir)  # config.json's ids as the generation config has them
    return {"config.json": cp_config.get("transformers_version"),
            "generation_config.json": generation.get("transformers_version") if generation else None}


def write_output_tokenizer(cp_dir: Path, chat_dir: Path, eos: str | None, out_dir: Path) -> None:
    """The CP's tokenizer files as they are (its class, vocabulary, added tokens: every CP token keeps its id),
    with the chat model's template stored where the chat model stores it, and `eos` in every file that names one."""
    copy_tokenizer_files(cp_dir, out_dir)
    config = _read(out_dir / "tokenizer_config.json")
    special = _read(out_dir / "special_tokens_map.json")
    place = template_place(chat_dir)
    if place is not None and Path(chat_dir) != Path(cp_dir):
        config.pop("chat_template", None)  # the CP's own template, wherever it was, gives way to the chat model's
        for name in TEMPLATE_FILES:
            (out_dir / name).unlink(missing_ok=True)
        if place == "tokenizer_config.json":
            config["chat_template"] = _read(Path(chat_dir) / place)["chat_template"]
        else:
            shutil.copyfile(Path(chat_dir) / place, out_dir / place)
        if (Path(chat_dir) / TEMPLATE_FOLDER).is_dir():
            shutil.copytree(Path(chat_dir) / TEMPLATE_FOLDER, out_dir / TEMPLATE_FOLDER)
    if eos:
        config["eos_token"] = _same_form(config.get("eos_token"), eos)
        if special:
            special["eos_token"] = _same_form(special.get("eos_token"), eos)
    if config or (out_dir / "tokenizer_config.json").is_file():
        _write(out_dir / "tokenizer_config.json", config)
    if special:
        _write(out_dir / "special_tokens_map.json", special)


def template_place(model_dir: Path) -> str | None:
    """Where a tokenizer keeps its chat template, in the order transformers looks: a file of its own, else a key
    of tokenizer_config.json; None without one."""
    for name in TEMPLATE_FILES:
        if (Path(model_dir) / name).is_file():
            return name
    return "tokenizer_config.json" if _read(Path(model_dir) / "tokenizer_config.json").get("chat_template") else None


def adopted_eos(cp, chat) -> bool:
    """Whether the output takes the chat model's eos token: it differs from the CP's and the CP's vocabulary has it."""
    if not chat.eos_token or chat.eos_token == cp.eos_token:
        return False
    if chat.eos_token not in cp.get_vocab():
        print(f"warning: the chat model's eos token {chat.eos_token!r} is not in the CP tokenizer; keeping the CP's {cp.eos_token!r}", file=sys.stderr)
        return False
    return True


def write_generation_config(chat_dir: Path, cp_dir: Path, chat_tokenizer, cp_tokenizer, ids: dict[str, int], out_dir: Path) -> dict | None:
    """The chat model's generation config (else the CP's) with its special-token ids translated to the CP's ids by token
    string, and made to agree with the output tokenizer (`ids`: its bos, eos and pad ids); None where neither has one."""
    source = chat_dir if (chat_dir / "generation_config.json").is_file() else cp_dir
    if not (source / "generation_config.json").is_file():
        return None
    config = json.loads((source / "generation_config.json").read_text())
    if source == chat_dir:
        for key in (f"{name}_token_id" for name in SPECIAL):
            value = config.get(key)
            if value is None:
                continue
            kept, missing = translate_ids([value] if isinstance(value, int) else value, chat_tokenizer, cp_tokenizer)
            if missing:
                print(f"warning: generation config {key}: the CP tokenizer lacks {missing}; dropped", file=sys.stderr)
            config[key] = kept[0] if len(kept) == 1 and isinstance(value, int) else kept if kept else None
    _agree(config, ids)
    _write(out_dir / "generation_config.json", config)
    return config


def copy_generation_config(model_dir: Path, out_dir: Path) -> None:
    """The chat model's generation config (its end-of-turn ids), when it has one."""
    path = Path(model_dir) / "generation_config.json"
    if path.is_file():
        shutil.copyfile(path, out_dir / "generation_config.json")


def write_config(config: dict, dtype_name: str | None, ids: dict, out_dir: Path) -> None:
    """config.json as the CP has it, with the dtype written (under the key the CP's transformers version reads) and
    its special-token ids agreeing with the tokenizer and generation config; no key is added but the dtype's."""
    config = dict(config)
    if dtype_name:
        keys = [k for k in ("torch_dtype", "dtype") if k in config] or [_dtype_key(config.get("transformers_version"))]
        config.update(dict.fromkeys(keys, dtype_name))
    _agree(config, ids)
    _write(out_dir / "config.json", config, sort_keys=True)  # as transformers writes it


def _special_ids(out_dir: Path, tokenizer) -> dict[str, int]:
    """The output tokenizer's bos, eos and pad ids (`{name}_token_id`), from the files just written."""
    config, vocab = _read(out_dir / "tokenizer_config.json"), tokenizer.get_vocab()
    tokens = {name: _content(config.get(f"{name}_token")) or getattr(tokenizer, f"{name}_token", None) for name in SPECIAL}
    return {f"{name}_token_id": vocab[token] for name, token in tokens.items() if token in vocab}


def _agree(config: dict, ids: dict) -> None:
    """Each special-token id the config states becomes the given one; a single eos id joins an eos list first (the
    list's other end-of-turn ids stay stop ids). A key the config does not state is not added."""
    for key, value in ids.items():
        current = config.get(key)
        if current is None or value is None or current == value or isinstance(current, list) and value in current:
            continue
        if key == "eos_token_id" and isinstance(value, int):
            config[key] = [value, *(i for i in (current if isinstance(current, list) else [current]) if i != value)]
        else:
            config[key] = value


def _dtype_key(version: str | None) -> str:
    try:
        major, minor = (int(part) for part in str(version).split(".")[:2])
    except ValueError:
        return "dtype"
    return "dtype" if (major, minor) >= DTYPE_KEY_SINCE else "torch_dtype"


def _same_form(old, token: str):
    """A token as the file stated the one it replaces: a plain string, or an AddedToken's dict."""
    return {**old, "content": token} if isinstance(old, dict) else token


def _content(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _write(path: Path, data: dict, sort_keys: bool = False) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n")
