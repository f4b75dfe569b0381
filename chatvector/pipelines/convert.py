"""Convert a reference-format chat vector into chatvector's own directory format, streamed."""
import json
from pathlib import Path

from ..errors import ChatVectorError
from ..io.checkpoint import Checkpoint
from ..io.layout import ONE_SHARD
from ..io.outdir import atomic_output_dir
from ..io.stream import copy_tensor, write_tensors
from ..io.tokenizer_files import copy_tokenizer_files
from ..merge.lineage import write_fingerprint
from ..merge.vector import open_chat_vector
from .extract import vector_metadata
from .model_files import copy_generation_config
from .modelcard import write_vector_card


def convert_reference(old: str, new: str, max_shard_size: str | int = "5GB", overwrite: bool = False, command: str | None = None) -> Path:
    """Write `old` (reference pytorch_model.bin) as safetensors shards with the chat model's own embedding rows,
    its tokenizer, metadata, a model card and, when the base model is readable, a base fingerprint.

    The chat model named in the reference's cfg must be readable: its rows and tokenizer are what the
    reference left out.
    """
    vector = open_chat_vector(old)
    try:
        if vector.meta.get("format") != "reference":
            raise ChatVectorError(f"{old} is already a chatvector chat vector; nothing to convert")
        chat_dir, base_dir = vector.chat_dir, Path(vector.meta["base_model"]).expanduser()
        has_base = (base_dir / "config.json").is_file()
        names = [n for n, info in vector.tensors.infos.items() if info.is_float]
        with Checkpoint(chat_dir) as chat, atomic_output_dir(Path(new), overwrite, [vector.dir, chat_dir]) as tmp:
            write_tensors(tmp, "chat_vector", [copy_tensor(n, vector.tensors) for n in names], max_shard_size, "convert")
            write_tensors(tmp, "chat_embeddings", [copy_tensor(n, chat) for n in vector.embeddings.names], ONE_SHARD, "embeddings")
            if has_base:
                with Checkpoint(base_dir) as base:
                    write_fingerprint(base, [n for n in names if n in base.infos], tmp)
            copy_tokenizer_files(chat_dir, tmp)
            copy_generation_config(chat_dir, tmp)
            meta = vector_metadata(vector.meta["base_model"], vector.meta["chat_model"], base_dir, chat_dir, vector.meta["config"], "auto",
                                   vector.embeddings, vector.tensors.infos, fingerprint=has_base)
            meta["converted_from"] = str(old)
            (tmp / "chat_vector.json").write_text(json.dumps(meta, indent=2) + "\n")
            write_vector_card(tmp, Path(new).name, meta, command)
    finally:
        vector.close()
    return Path(new)
