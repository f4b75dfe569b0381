"""Write sharded safetensors as tensors are computed, into a directory that appears only when complete."""
import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import DTYPE_NAMES, _numel
from .errors import ChatVectorError
from .filemap import copy_range, mapped
from .interrupts import cleanup_on_interrupt

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return _numel(self.shape) * self.dtype.itemsize

    @property
    def row_bytes(self) -> int:
        """Bytes of one row (a 0-d tensor is one row)."""
        return self.nbytes // max(self.shape[0], 1) if self.shape else self.nbytes


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


def plan_shards(specs: Sequence[TensorSpec], max_shard_size: int, prefix: str) -> list[tuple[str, list[TensorSpec]]]:
    """Split tensors, in order, into shards of at most max_shard_size bytes (a bigger tensor gets its own)."""
    groups: list[list[TensorSpec]] = [[]]
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


def write_index(out_dir: Path, prefix: str, shards: list[tuple[str, list[TensorSpec]]]) -> None:
    """The transformers index file, written only when there is more than one shard."""
    if len(shards) < 2:
        return
    weight_map = {spec.name: file for file, specs in shards for spec in specs}
    total = sum(spec.nbytes for _, specs in shards for spec in specs)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out_dir / f"{prefix}.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


class SafetensorsWriter:
    """Streams one safetensors file: the header is known up front, so every tensor's bytes have a fixed place.

    Each tensor is filled front to back, by `write` (computed rows) or `copy` (stored bytes, in the kernel);
    tensors may be filled in any order, and `view` maps bytes already placed so they can be updated in place.
    """

    def __init__(self, path: Path, specs: Sequence[TensorSpec], metadata: dict[str, str] | None = None):
        header: dict = {"__metadata__": metadata or {"format": "pt"}}
        offset = 0
        for spec in specs:
            header[spec.name] = {"dtype": DTYPE_NAMES[spec.dtype], "shape": list(spec.shape), "data_offsets": [offset, offset + spec.nbytes]}
            offset += spec.nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # data starts 8-byte aligned, as the safetensors library writes it
        self.path = Path(path)
        self._specs = {spec.name: spec for spec in specs}
        self._start = {name: 8 + len(blob) + entry["data_offsets"][0] for name, entry in header.items() if name != "__metadata__"}
        self._filled = dict.fromkeys(self._specs, 0)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        os.pwrite(self._fd, struct.pack("<Q", len(blob)) + blob, 0)

    def write(self, name: str, chunk: torch.Tensor) -> None:
        """Place the next rows of tensor `name` (in its dtype)."""
        if chunk.dtype != self._specs[name].dtype:
            raise RuntimeError(f"writer expected {name} in {self._specs[name].dtype}, got {chunk.dtype}")
        data = memoryview(chunk.contiguous().reshape(-1).view(torch.uint8).numpy())
        at = self.reserve(name, len(data))
        while len(data):
            written = os.pwrite(self._fd, data, at)
            data, at = data[written:], at + written

    def copy(self, at: int, source_fd: int, source_offset: int, nbytes: int) -> None:
        """Fill nbytes reserved at file offset `at` from another file, without passing them through Python."""
        copy_range(source_fd, source_offset, self._fd, at, nbytes)

    def view(self, name: str, start: int, nbytes: int) -> torch.Tensor:
        """Bytes [start, start + nbytes) of tensor `name`, already placed, as a writable flat tensor of its dtype."""
        if start + nbytes > self._filled[name]:
            raise RuntimeError(f"{name}: bytes {start}-{start + nbytes} are not reserved yet")
        return mapped(self._fd, self._start[name] + start, nbytes, self._specs[name].dtype, writable=True)

    def reserve(self, name: str, nbytes: int) -> int:
        """The file offset of the next nbytes of tensor `name`, taken in call order (copies may then run in parallel);
        more than the tensor holds is a bug."""
        at = self._filled[name]
        if at + nbytes > self._specs[name].nbytes:
            raise RuntimeError(f"too many bytes for {name}")
        self._filled[name] = at + nbytes
        return self._start[name] + at

    def abort(self) -> None:
        """Close without the completeness check: the file is being abandoned."""
        os.close(self._fd)

    def close(self) -> None:
        os.close(self._fd)
        short = [name for name, spec in self._specs.items() if self._filled[name] != spec.nbytes]
        if short:
            raise RuntimeError(f"{self.path} was closed before all its tensors were written ({short[0]})")


_TMP_MARK = ".chatvector-partial-"


@contextmanager
def atomic_output_dir(output: Path, overwrite: bool, inputs: Sequence[Path]) -> Iterator[Path]:
    """Yield a temporary sibling directory; move it to `output` only if the block finishes."""
    output = Path(output).expanduser().absolute()
    check_output(output, overwrite, inputs)
    output.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(output.parent)
    with cleanup_on_interrupt():  # from here on Ctrl-C must unwind through the `finally` that removes tmp
        yield from _build_then_replace(output)


def _build_then_replace(output: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}{_TMP_MARK}{os.getpid()}-", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make the result private
    try:
        yield tmp
        if output.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}{_TMP_MARK}{os.getpid()}-old-", dir=output.parent))
            os.replace(output, old / "x")
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_output(output: Path, overwrite: bool, inputs: Sequence[Path]) -> None:
    real = Path(os.path.realpath(output))
    for source in inputs:
        source = Path(os.path.realpath(source))
        if real == source or source in real.parents or real in source.parents:
            raise ChatVectorError(f"output path {output} overlaps the input {source}; choose a new directory for the output")
    if output.exists() and not output.is_dir():
        raise ChatVectorError(f"output path {output} is a file; choose a directory path")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ChatVectorError(f"output path {output} exists and is not empty; choose another path or pass --overwrite True")


def _remove_stale_partials(parent: Path) -> None:
    """Partial outputs of killed runs (their process is gone) in this folder, whatever their output's name,
    are removed; live runs' are left alone."""
    for path in parent.glob(f".*{_TMP_MARK}*"):
        pid = path.name.split(_TMP_MARK, 1)[1].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
