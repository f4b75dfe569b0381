"""The safetensors layout without torch: weight files listed, headers read and built, shards planned.

Torch-free so that extract and add can lay out their output, and start copying bytes into it, while torch
imports (see headstart.py); the Checkpoint and the writer build on the same functions.
"""
import json
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import ChatVectorError

DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "F8_E4M3": 1, "F8_E5M2": 1}
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2"}
_MAX_HEADER = 100 * 1024 * 1024
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def truncated(file: Path, name: str) -> ChatVectorError:
    return ChatVectorError(f"{file} was truncated while reading {name}; re-download or re-save it")


def weight_files(model_dir: Path, prefix: str) -> tuple[list[Path], str]:
    """The weight files of a directory, in order, and their format ('safetensors' or 'bin')."""
    for ext, single in (("safetensors", f"{prefix}.safetensors"), ("bin", "pytorch_model.bin")):
        index_name = f"{prefix}.safetensors.index.json" if ext == "safetensors" else "pytorch_model.bin.index.json"
        index = model_dir / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError):
                raise ChatVectorError(f"{index} is not a valid shard index (no weight_map); re-download or re-save the model") from None
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (model_dir / f).is_file()]
            if missing:
                raise ChatVectorError(f"{index} names shard {missing[0]}, which is missing; re-download the model")
            return [model_dir / f for f in files], ext
        if (model_dir / single).is_file():
            return [model_dir / single], ext
    raise ChatVectorError(f"no weights in {model_dir}: expected {prefix}.safetensors, a sharded index, or pytorch_model.bin")


def read_header(file: Path) -> tuple[dict[str, tuple[str, tuple[int, ...], int]], dict[str, str]]:
    """A safetensors file's tensors, in header order: name -> (dtype name, shape, absolute data offset), and its
    metadata; every tensor is checked to lie inside the file (catches truncation)."""
    size = file.stat().st_size
    with open(file, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ChatVectorError(f"{file} is truncated or not a safetensors file; re-download or re-save it")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, _MAX_HEADER):
            raise ChatVectorError(f"{file} has a corrupt header (length {header_len}); re-download or re-save it")
        try:
            header = json.loads(f.read(header_len))
        except ValueError:
            raise ChatVectorError(f"{file} has a corrupt header; re-download or re-save it") from None
    metadata = header.pop("__metadata__", None) or {}
    data_start, tensors = 8 + header_len, {}
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(int(d) for d in entry["shape"]), entry["data_offsets"]
            itemsize = DTYPE_SIZES[dtype]
        except (KeyError, TypeError, ValueError):
            raise ChatVectorError(f"{file}: tensor {name} has an unsupported or corrupt header entry {entry!r}") from None
        if end - begin != numel(shape) * itemsize or data_start + end > size:
            raise ChatVectorError(f"{file} is truncated or corrupt: tensor {name} lies outside the file; re-download or re-save it")
        tensors[name] = (dtype, shape, data_start + begin)
    return tensors, metadata


def header_bytes(tensors: Sequence[tuple[str, str, tuple[int, ...], int]], metadata: dict[str, str] | None = None) -> tuple[bytes, dict[str, int]]:
    """The bytes that open a safetensors file holding (name, dtype name, shape, nbytes) in this order, and each
    tensor's absolute data offset in it."""
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, dtype, shape, nbytes in tensors:
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned, as the safetensors library writes it
    start = 8 + len(blob)
    return struct.pack("<Q", len(blob)) + blob, {name: start + header[name]["data_offsets"][0] for name, *_ in tensors}


def parse_size(size: str | int) -> int:
    """'5GB' -> 5e9, '500MiB' -> 500 * 2**20 (the units transformers accepts)."""
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    text = str(size).strip().upper().replace(" ", "")
    number = text.rstrip("KMGTIB")
    try:
        value = int(float(number) * _UNITS[text[len(number):]])
    except (ValueError, KeyError):
        value = 0
    if value <= 0:
        raise ChatVectorError(f"--max_shard_size must be a size like 5GB or 500MB, got {size!r}")
    return value


ONE_SHARD = 2**62  # a max_shard_size that keeps every tensor in one file


def plan_shards(specs: Sequence, max_shard_size: int, prefix: str) -> list[tuple[str, list]]:
    """Split tensors (anything with .nbytes), in order, into shards of at most max_shard_size bytes (a bigger
    tensor gets its own)."""
    groups: list[list] = [[]]
    size = 0
    for spec in specs:
        if groups[-1] and size + spec.nbytes > max_shard_size:
            groups.append([])
            size = 0
        groups[-1].append(spec)
        size += spec.nbytes
    if len(groups) == 1:
        return [(f"{prefix}.safetensors", groups[0])]
    n = len(groups)
    return [(f"{prefix}-{i:05d}-of-{n:05d}.safetensors", group) for i, group in enumerate(groups, 1)]
