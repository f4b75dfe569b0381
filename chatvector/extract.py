"""extract: chat vector = chat model - base model, streamed tensor by tensor into a portable directory."""
import datetime
import json
from pathlib import Path

from . import __version__
from .arithmetic import Workspace, accumulation_dtype, subtract_into
from .checkpoint import Checkpoint, load_config, resolve_model_dir
from .embeddings import find_embedding_keys
from .modelcard import write_vector_card
from .stream import OutputTensor, output_dtype, resolve_device, write_tensors
from .tokenizer import copy_generation_config, save_chat_tokenizer
from .validate import check_same_architecture, check_same_names, check_same_shapes, float_names
from .writer import TensorSpec, atomic_output_dir

FORMAT_VERSION = 1


def extract(base_model_path: str, chat_model_path: str, chat_vector_path: str, dtype: str = "auto", device: str = "auto",
            max_shard_size: str | int = "5GB", overwrite: bool = False, command: str | None = None) -> Path:
    """Write chat - base for every floating-point weight, plus what `add` needs, to chat_vector_path.

    Args:
        base_model_path: the base model (local directory or hub id).
        chat_model_path: the chat model tuned from it.
        chat_vector_path: the output directory.
        dtype: storage dtype; 'auto' keeps each of the chat model's tensors in its own dtype.
        device: where the arithmetic runs: 'cpu', 'cuda' or 'auto'.
        max_shard_size: largest shard, e.g. '5GB'.
        overwrite: replace a non-empty chat_vector_path.
        command: the command line, recorded in the model card.
    """
    base_dir, chat_dir = resolve_model_dir(base_model_path, "base model"), resolve_model_dir(chat_model_path, "chat model")
    dtype_override, run_device = output_dtype(dtype), resolve_device(device)
    chat_config = load_config(chat_dir, "chat model")
    check_same_architecture(load_config(base_dir, "base model"), "base model", chat_config, "chat model")
    with Checkpoint(base_dir) as base, Checkpoint(chat_dir, pin_memory=run_device.type == "cuda") as chat:
        names = float_names(chat.infos)
        check_same_names(float_names(base.infos), "base model", names, "chat model")
        embeddings = find_embedding_keys(chat_dir, list(chat.infos))
        fix = "the chat model changed its vocabulary size; extract needs base and chat vocabularies of one size"
        check_same_shapes(base.infos, "base model", chat.infos, "chat model", names, embeddings.names, fix)
        ordered = [n for n in chat.infos if n in names]  # the chat model's file order: sequential reads
        workspace = Workspace(run_device)
        outputs = [_vector_tensor(n, base, chat, dtype_override or chat.infos[n].dtype, workspace) for n in ordered]
        meta = _metadata(base_model_path, chat_model_path, base_dir, chat_dir, chat_config, dtype, embeddings, chat.infos)
        with atomic_output_dir(Path(chat_vector_path), overwrite, [base_dir, chat_dir]) as tmp:
            write_tensors(tmp, "chat_vector", outputs, max_shard_size, "extract")
            write_tensors(tmp, "chat_embeddings", [_copy_tensor(n, chat) for n in embeddings.names], 2**62, "embeddings")
            save_chat_tokenizer(chat_dir, tmp)
            copy_generation_config([chat_dir], tmp)
            (tmp / "chat_vector.json").write_text(json.dumps(meta, indent=2) + "\n")
            write_vector_card(tmp, Path(chat_vector_path).name, meta, command)
    return Path(chat_vector_path)


def _vector_tensor(name: str, base: Checkpoint, chat: Checkpoint, dtype, workspace: Workspace) -> OutputTensor:
    info = chat.infos[name]

    def compute(start: int, stop: int):
        chat_rows = chat.read(name, start, stop)
        shape = tuple(chat_rows.shape)
        acc = workspace.get("acc", shape, accumulation_dtype(dtype))
        subtract_into(acc, chat_rows, workspace.to_device(base.read(name, start, stop), "base"))
        return workspace.get("out", shape, dtype, host=True).copy_(acc)

    return OutputTensor(TensorSpec(name, dtype, info.shape), compute)


def _copy_tensor(name: str, source: Checkpoint) -> OutputTensor:
    info = source.infos[name]
    return OutputTensor(TensorSpec(name, info.dtype, info.shape), lambda start, stop: source.read(name, start, stop))


def _metadata(base_arg, chat_arg, base_dir, chat_dir, config, dtype, embeddings, infos) -> dict:
    stored = sorted({str(i.dtype).removeprefix("torch.") for i in infos.values() if i.is_float})
    return {
        "format": "chatvector",
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "base_model": str(base_arg),
        "chat_model": str(chat_arg),
        "base_model_resolved": str(base_dir),
        "chat_model_resolved": str(chat_dir),
        "architectures": config.get("architectures") or [],
        "model_type": config.get("model_type"),
        "dtype": dtype if dtype != "auto" else "/".join(stored),
        "embeddings": embeddings.to_json(),
        "config": config,
    }
