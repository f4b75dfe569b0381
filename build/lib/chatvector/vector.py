"""A chat vector directory: its metadata, its lazily read tensors and the chat model's embeddings."""
import json
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import Checkpoint, resolve_model_dir
from .embeddings import EmbeddingKeys
from .errors import ChatVectorError

SUPPORTED_FORMAT_VERSIONS = (1,)


@dataclass
class ChatVector:
    path: str  # as the user gave it
    dir: Path
    meta: dict
    tensors: Checkpoint
    chat_embeddings: Checkpoint

    @property
    def embeddings(self) -> EmbeddingKeys:
        return EmbeddingKeys.from_json(self.meta["embeddings"])

    def close(self) -> None:
        self.tensors.close()
        self.chat_embeddings.close()


def open_chat_vector(path: str, pin_memory: bool = False) -> ChatVector:
    vector_dir = resolve_model_dir(path, "chat vector")
    meta_path = vector_dir / "chat_vector.json"
    if not meta_path.is_file():
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
    return ChatVector(path, vector_dir, meta, tensors, Checkpoint(vector_dir, prefix="chat_embeddings"))
