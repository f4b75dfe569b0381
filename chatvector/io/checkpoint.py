"""Read a model directory's weights lazily: names, dtypes and shapes up front, bytes on demand."""
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ChatVectorError
from .buffers import Workspace
from .filemap import mapped
from .layout import numel as _numel, read_header, truncated, weight_files as _weight_files

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}  # fmt: skip
DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    file: Path
    offset: int  # absolute byte offset of the data in a safetensors file; -1 for .bin

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_numel(self) -> int:
        return _numel(self.shape[1:]) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return _numel(self.shape) * self.dtype.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype.is_floating_point


def resolve_model_dir(path_or_id: str, what: str) -> Path:
    """A local directory, or a hub id found in (or, when online, fetched into) the local hub cache."""
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise ChatVectorError(f"{what} {path_or_id} is a file; give the model's directory")
    if looks_local(path_or_id):
        raise ChatVectorError(f"{what} {path_or_id} does not exist: no such directory; check the path")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    patterns = ["*.json", "*.safetensors", "*.bin", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        return Path(snapshot_download(path_or_id, local_files_only=True, allow_patterns=patterns))
    except HFValidationError:
        raise ChatVectorError(f"{what} {path_or_id} does not exist; give a model directory or a hub id") from None
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ChatVectorError(f"{what} {path_or_id} does not exist: no such directory, and no hub model of that name in the local "
                              "Hugging Face cache (HF_HUB_OFFLINE is set); check the path")
    try:
        return Path(snapshot_download(path_or_id, allow_patterns=patterns))
    except Exception as e:
        raise ChatVectorError(f"{what} {path_or_id} does not exist: no such directory, and it could not be fetched from the hub "
                              f"({type(e).__name__}); check the path or the hub id") from None


def looks_local(path_or_id: str) -> bool:
    """`./x`, `~/x`, `/abs/x`, `a/b/c`, or `ckpt/x` where `ckpt/` exists here: a path, never a hub id (`org/name`)."""
    text = str(path_or_id)
    if text.startswith(("/", ".", "~")) or text.count("/") > 1 or os.sep != "/" and os.sep in text:
        return True
    return text.count("/") == 1 and Path(text).parent.is_dir()


def hub_revision(model_dir: Path) -> str | None:
    """The commit of a hub-cache snapshot (`.../snapshots/<commit>`), recorded instead of a local path."""
    return model_dir.name if model_dir.parent.name == "snapshots" else None


def read_safetensors_header(file: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse a safetensors header and check every tensor lies inside the file (catches truncation)."""
    tensors, metadata = read_header(file)
    return {name: TensorInfo(name, SAFETENSORS_DTYPES[dtype], shape, file, offset) for name, (dtype, shape, offset) in tensors.items()}, metadata


class Checkpoint:
    """Lazy view of a model's weights.

    `read` maps the rows' bytes (no copy; read-only: never write into a result). With pinned memory (the
    CUDA route) it reads into one of two reused pinned buffers, taken in turn: a result then stays valid
    until the second read after it (on the same thread), so one chunk can be written by a background thread while the next is read.
    """

    def __init__(self, model_dir: Path, prefix: str = "model", pin_memory: bool = False, state: dict[str, torch.Tensor] | None = None):
        """`state`: tensors already mapped from a pickle (a reference-format vector) instead of the directory's files."""
        self.dir = Path(model_dir)
        self.infos: dict[str, TensorInfo] = {}
        self._bin: dict[str, torch.Tensor] = {}
        if state is not None:
            self.format = "bin"
            self.infos = self._adopt(state, self.dir)
        else:
            files, self.format = _weight_files(self.dir, prefix)
            for file in files:
                infos = read_safetensors_header(file)[0] if self.format == "safetensors" else self._load_bin(file)
                self.infos.update(infos)
        self._pin = pin_memory
        self._buffers = Workspace(torch.device("cuda" if pin_memory else "cpu"))  # its output buffers: pinned, two per thread
        self._fds: dict[Path, int] = {}
        self._opening = threading.Lock()

    def _load_bin(self, file: Path) -> dict[str, TensorInfo]:
        try:
            state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
        except Exception as e:
            raise ChatVectorError(f"{file} cannot be read as a safe PyTorch checkpoint ({type(e).__name__}); convert it to safetensors") from None
        return self._adopt(state, file)

    def _adopt(self, state: dict, file: Path) -> dict[str, TensorInfo]:
        infos = {}
        for name, tensor in state.items():
            if isinstance(tensor, torch.Tensor):
                self._bin[name] = tensor
                infos[name] = TensorInfo(name, tensor.dtype, tuple(tensor.shape), file, -1)
        return infos

    def read(self, name: str, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Rows [start, stop) of a tensor in its stored dtype (a 0-d tensor has one row)."""
        info = self.infos[name]
        stop = info.rows if stop is None else stop
        if info.offset < 0:
            tensor = self._bin[name]
            return tensor if not info.shape else tensor[start:stop]
        row_bytes = info.row_numel * info.dtype.itemsize
        shape = (stop - start, *info.shape[1:]) if info.shape else ()
        offset, nbytes = info.offset + start * row_bytes, (stop - start) * row_bytes
        if not self._pin and offset % info.dtype.itemsize == 0:
            fd = self.fd(info.file)
            if os.fstat(fd).st_size < offset + nbytes:  # mapped pages past the end would kill the process on access
                raise truncated(info.file, info.name)
            return mapped(fd, offset, nbytes, info.dtype).view(shape)
        view = self._next_buffer(nbytes)
        self._pread(info, memoryview(view.numpy()), start * row_bytes)
        return view.view(info.dtype).view(shape)

    def read_elements(self, name: str, start: int, stop: int) -> torch.Tensor:
        """Flat elements [start, stop) of a tensor, as a new tensor (a few hundred: the lineage sample)."""
        info = self.infos[name]
        if info.offset < 0:
            return self._bin[name].reshape(-1)[start:stop].clone()
        data = torch.empty((stop - start) * info.dtype.itemsize, dtype=torch.uint8)
        self._pread(info, memoryview(data.numpy()), start * info.dtype.itemsize)
        return data.view(info.dtype)

    def read_rows(self, name: str, rows: list[int]) -> torch.Tensor:
        """The given rows of a 2-d tensor, in that order; runs of consecutive rows are read in one call."""
        info = self.infos[name]
        if info.offset < 0:
            return self._bin[name][torch.tensor(rows, dtype=torch.long)]
        row_bytes = info.row_numel * info.dtype.itemsize
        view = self._next_buffer(len(rows) * row_bytes)
        memory, at = memoryview(view.numpy()), 0
        while at < len(rows):
            run = 1
            while at + run < len(rows) and rows[at + run] == rows[at] + run:
                run += 1
            self._pread(info, memory[at * row_bytes:(at + run) * row_bytes], rows[at] * row_bytes)
            at += run
        return view.view(info.dtype).view(len(rows), *info.shape[1:])

    def _next_buffer(self, nbytes: int) -> torch.Tensor:
        """The other of this thread's two read buffers, grown to nbytes (see the class docstring)."""
        return self._buffers.output((nbytes,), torch.uint8)

    def _pread(self, info: TensorInfo, memory: memoryview, offset: int) -> None:
        """Fill `memory` from the tensor's data at `offset` bytes; a short read means the file shrank."""
        if os.preadv(self.fd(info.file), [memory], info.offset + offset) != len(memory):
            raise truncated(info.file, info.name)

    def fd(self, file: Path) -> int:
        """An open descriptor of one of the weight files, kept until close()."""
        if file not in self._fds:
            with self._opening:
                if file not in self._fds:
                    self._fds[file] = os.open(file, os.O_RDONLY)
        return self._fds[file]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        self._bin.clear()

    def __enter__(self) -> "Checkpoint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load_config(model_dir: Path, what: str) -> dict:
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise ChatVectorError(f"{what} {model_dir} has no config.json; is it a Hugging Face model directory?")
    try:
        return json.loads(path.read_text())
    except ValueError:
        raise ChatVectorError(f"{path} is not valid JSON; re-download or re-save the model") from None
