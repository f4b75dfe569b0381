"""A chat vector directory: its metadata, its lazily read tensors and the chat model's embeddings.

Also a directory written by the reference `extract_chat_vector.py`: one `pytorch_model.bin` holding
`chat_vector` (chat - base by parameter name), `chat_embed`, `chat_lmhead` and `cfg`, mapped with
`torch.load(weights_only=True, mmap=True)`, never unpickled as arbitrary code.
"""
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ChatVectorError
from ..io.checkpoint import Checkpoint, resolve_model_dir
from .embeddings import EmbeddingKeys, embedding_keys

SUPPORTED_FORMAT_VERSIONS = (1,)


@dataclass
class ChatVector:
    path: str  # as the user gave it
    dir: Path
    meta: dict
    tensors: Checkpoint
    chat_embeddings: Checkpoint | None  # None for a reference-format vector (its rows are the base model's)
    chat_dir: Path | None = None  # where the chat model's tokenizer, template and generation config are; None: the CP's own

    @property
    def embeddings(self) -> EmbeddingKeys:
        return EmbeddingKeys.from_json(self.meta["embeddings"])

    def close(self) -> None:
        self.tensors.close()
        if self.chat_embeddings is not None:
            self.chat_embeddings.close()


def open_chat_vector(path: str, pin_memory: bool = False, cp: tuple[Path, dict] | None = None) -> ChatVector:
    """`cp` (the CP's directory and config) stands in for a reference-format vector's unreadable chat model."""
    vector_dir = resolve_model_dir(path, "chat vector")
    meta_path = vector_dir / "chat_vector.json"
    if not meta_path.is_file():
        if (vector_dir / "pytorch_model.bin").is_file():
            return _open_reference(path, vector_dir, cp)
        raise ChatVectorError(f"{path} is not a chat vector directory (no chat_vector.json); make one with extract_chat_vector.py")
    try:
        meta = json.loads(meta_path.read_text())
        version = meta["format_version"]
        meta["embeddings"]["input_embedding"]
    except (ValueError, KeyError, TypeError):
        raise ChatVectorError(f"{meta_path} is corrupt; extract the chat vector again") from None
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ChatVectorError(f"{path} has chat vector format {version}, which this chatvector cannot read; upgrade chatvector")
    tensors = Checkpoint(vector_dir, prefix="chat_vector", pin_memory=pin_memory)
    return ChatVector(path, vector_dir, meta, tensors, Checkpoint(vector_dir, prefix="chat_embeddings"), vector_dir)


def _open_reference(path: str, vector_dir: Path, cp: tuple[Path, dict] | None) -> ChatVector:
    file = vector_dir / "pytorch_model.bin"
    try:
        blob = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
    except Exception as e:
        raise ChatVectorError(f"{file} cannot be read as a safe PyTorch pickle ({type(e).__name__}): it is not a chat vector, "
                              "or it carries code; only tensors and plain values are loaded") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("chat_vector"), dict):
        raise ChatVectorError(f"{path} holds a pytorch_model.bin that is neither a chat vector of the reference script nor ours; "
                              "make one with extract_chat_vector.py")
    cfg = blob.get("cfg") if isinstance(blob.get("cfg"), dict) else {}
    chat_dir = Path(str(cfg.get("chat_model_path", ""))).expanduser()
    readable = bool(cfg.get("chat_model_path")) and (chat_dir / "config.json").is_file()
    if not readable and cp is None:
        raise ChatVectorError(f"{path} is a reference-format chat vector whose chat model {cfg.get('chat_model_path')!r} is not readable here")
    config_dir, config = (chat_dir, json.loads((chat_dir / "config.json").read_text())) if readable else cp
    tensors = Checkpoint(vector_dir, state=blob["chat_vector"])
    meta = {"format": "reference", "base_model": str(cfg.get("base_model_path", "?")), "chat_model": str(cfg.get("chat_model_path", "?")),
            "config": config, "embeddings": embedding_keys(config_dir, config, list(tensors.infos)).to_json()}
    source = f"its tokenizer and template come from {chat_dir}" if readable else \
        f"its chat model {cfg.get('chat_model_path')!r} is not readable here, so the CP keeps its own tokenizer and template"
    print(f"warning: {path} is a reference-format chat vector: its chat_embed/chat_lmhead are the base model's rows (the reference "
          f"script's bug), so --special_tokens_map cannot use them; {source}", file=sys.stderr)
    return ChatVector(path, vector_dir, meta, tensors, None, chat_dir if readable else None)
