"""extract: chat vector = chat model - base model, streamed tensor by tensor into a portable directory."""
import datetime
from concurrent.futures import ThreadPoolExecutor
import json
import sys
from pathlib import Path

from .. import __version__
from ..errors import ChatVectorError
from ..io.buffers import Workspace
from ..io.checkpoint import Checkpoint, hub_revision, load_config, resolve_model_dir
from ..io.headstart import HeadStart
from ..io.layout import ONE_SHARD
from ..io.outdir import atomic_output_dir
from ..io.stream import Device, Dtype, OutputTensor, copy_tensor, output_dtype, resolve_device, seed_of, write_tensors
from ..io.tokenizer_files import copy_tokenizer_files, load_tokenizer, require_tokenizer_files
from ..io.writer import TensorSpec
from ..merge.arithmetic import subtract_into
from ..merge.embeddings import embedding_keys
from ..merge.lineage import FINGERPRINT_FILE, RULE, write_fingerprint
from ..merge.validate import check_same_architecture, check_same_names, check_same_shapes, float_names
from .model_files import copy_generation_config
from .modelcard import load_card_library, write_vector_card

FORMAT_VERSION = 1


def extract(base_model_path: str, chat_model_path: str, chat_vector_path: str, dtype: Dtype = "auto", device: Device = "auto",
            max_shard_size: str | int = "5GB", overwrite: bool = False, command: str | None = None, head: HeadStart | None = None) -> Path:
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
        head: the vector's files as the command began copying them before torch was imported (io/headstart.py).
    """
    base_dir, chat_dir = resolve_model_dir(base_model_path, "base model"), resolve_model_dir(chat_model_path, "chat model")
    dtype_override, run_device = output_dtype(dtype), resolve_device(device)
    chat_config = load_config(chat_dir, "chat model")
    check_same_architecture(load_config(base_dir, "base model"), "base model", chat_config, "chat model")
    require_tokenizer_files(chat_dir, "chat model")
    with Checkpoint(base_dir) as base, Checkpoint(chat_dir, pin_memory=run_device.type == "cuda") as chat:
        names = float_names(chat.infos)
        check_same_names(float_names(base.infos), "base model", names, "chat model")
        embeddings = embedding_keys(chat_dir, chat_config, list(chat.infos))  # from config.json: no modelling stack to import
        rows = {}  # embedding -> the rows base and chat share, when the chat model appended tokens
        if any(base.infos[n].shape != chat.infos[n].shape for n in names):
            rows = _shared_rows(base.infos, chat.infos, embeddings.names, base_dir, chat_dir)
            check_same_shapes(base.infos, "base model", chat.infos, "chat model", names - set(rows))  # embeddings: checked above
        ordered = [n for n in chat.infos if n in names]  # the chat model's file order: sequential reads
        workspace = Workspace(run_device)
        nonzero: list[bool] = []  # set once a chunk of the vector is not all zeros
        outputs = [_vector_tensor(n, base, chat, dtype_override or chat.infos[n].dtype, workspace, rows.get(n), nonzero) for n in ordered]
        with atomic_output_dir(Path(chat_vector_path), overwrite, [base_dir, chat_dir], head and head.partial) as tmp, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="card") as side:
            side.submit(load_card_library)  # while the weights stream; nothing else imports meanwhile
            # a few positional reads per weight, how add checks a CP's lineage: beside the weights too
            fingerprint = side.submit(write_fingerprint, base, ordered, tmp)
            write_tensors(tmp, "chat_vector", outputs, max_shard_size, "extract", head)
            if not nonzero:
                print(f"warning: the chat vector is all zeros: {chat_model_path} has the same weights as {base_model_path}; "
                      "check that the chat model is the tuned one", file=sys.stderr)
            write_tensors(tmp, "chat_embeddings", [copy_tensor(n, chat) for n in embeddings.names], ONE_SHARD, "embeddings", head)
            if head is not None:
                head.release()
            fingerprint.result()
            copy_tokenizer_files(chat_dir, tmp)  # verbatim: the chat model's own files, template included
            copy_generation_config(chat_dir, tmp)
            meta = vector_metadata(base_model_path, chat_model_path, base_dir, chat_dir, chat_config, dtype, embeddings, chat.infos)
            (tmp / "chat_vector.json").write_text(json.dumps(meta, indent=2) + "\n")
            write_vector_card(tmp, Path(chat_vector_path).name, meta, command)
    return Path(chat_vector_path)


def _shared_rows(base_infos, chat_infos, embedding_names, base_dir, chat_dir) -> dict[str, int]:
    """A chat model that appended tokens (32000 -> 32002 rows) keeps a vector for the rows both have,
    provided the two tokenizers give those ids the same tokens; the new tokens' rows stay in chat_embeddings."""
    rows = {}
    for name in embedding_names:
        base_shape, chat_shape = base_infos[name].shape, chat_infos[name].shape
        if base_shape != chat_shape:
            if base_shape[1:] != chat_shape[1:]:
                raise ChatVectorError(f"tensor {name} has shape {list(base_shape)} in the base model but {list(chat_shape)} in the chat model; are they of one family?")
            rows[name] = min(base_shape[0], chat_shape[0])
    shared = min(rows.values(), default=0)
    if rows and (base_dir / "tokenizer_config.json").is_file():
        base_tokens = load_tokenizer(base_dir, "base model").convert_ids_to_tokens(list(range(shared)))
        chat_tokens = load_tokenizer(chat_dir, "chat model").convert_ids_to_tokens(list(range(shared)))
        differing = [i for i, (a, b) in enumerate(zip(base_tokens, chat_tokens)) if a and b and a != b]  # padding names nothing
        if differing:
            raise ChatVectorError(f"the base and chat tokenizers give token id {differing[0]} different tokens "
                                  f"({base_tokens[differing[0]]!r} vs {chat_tokens[differing[0]]!r}); a chat vector needs the chat model's own base")
    return rows


def _vector_tensor(name: str, base: Checkpoint, chat: Checkpoint, dtype, workspace: Workspace, rows: int | None,
                   nonzero: list[bool]) -> OutputTensor:
    """chat - base for one weight: on the CPU, the chat model's bytes are first copied into the output in the kernel
    (the pages are then in place), and the difference, computed in float32 and rounded once, is computed over them."""
    info = chat.infos[name]
    shape = info.shape if rows is None else (rows, *info.shape[1:])

    def compute(start: int, stop: int, into):
        chat_rows = workspace.to_device(chat.read(name, start, stop), "chat")
        out = workspace.result(tuple(chat_rows.shape), dtype) if into is None else into
        subtract_into(out, chat_rows, workspace.to_device(base.read(name, start, stop), "base"), workspace)
        out = workspace.to_host(out)
        if not nonzero and bool(out.any()):  # checked until the first non-zero chunk: usually just the first one
            nonzero.append(True)
        return out

    seed = seed_of(chat, name) if workspace.device.type == "cpu" and dtype == info.dtype else None
    return OutputTensor(TensorSpec(name, dtype, shape), compute, seed)


def vector_metadata(base_arg, chat_arg, base_dir, chat_dir, config, dtype, embeddings, infos, fingerprint: bool = True) -> dict:
    """chat_vector.json: what `add` needs, and what the models were as the user named them."""
    stored = sorted({str(i.dtype).removeprefix("torch.") for i in infos.values() if i.is_float})
    return {
        "format": "chatvector",
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "base_model": str(base_arg),
        "chat_model": str(chat_arg),
        "base_model_revision": hub_revision(base_dir),  # the hub commit for a hub id; None for a local directory
        "chat_model_revision": hub_revision(chat_dir),
        "architectures": config.get("architectures") or [],
        "model_type": config.get("model_type"),
        "dtype": dtype if dtype != "auto" else "/".join(stored),
        "embeddings": embeddings.to_json(),
        "base_fingerprint": {"file": FINGERPRINT_FILE, "rule": RULE} if fingerprint else None,
        "config": config,
    }
