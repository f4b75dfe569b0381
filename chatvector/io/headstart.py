"""A head start for extract and add: the output's stored bytes are copied while torch imports.

On the CPU every output tensor of both commands starts as a kernel copy of a stored tensor (the chat
model's for a vector, the CP's for a merge), which the computed rows then overwrite. Laying out those
files needs only the input's safetensors headers, so the command plans the files it expects before
importing torch, and a thread copies into them during the second or so that the import takes. The writer adopts a planned
file only if its own header and seeds turn out to be the ones planned here, and writes any other from
scratch: a wrong guess costs time, never bytes.
"""
import json
import os
import shutil
import threading
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .. import interrupts
from ..errors import ChatVectorError
from .filemap import copy_range
from .layout import FLOAT_DTYPES, DTYPE_SIZES, ONE_SHARD, header_bytes, numel, parse_size, plan_shards, read_header, truncated, weight_files
from .outdir import check_output, partial_dir

AHEAD_BYTES = 2 * 2**30  # copied ahead of the bytes the writer has asked for, at most: bounds dirty page cache on big models
PIECE_BYTES = 512 * 2**20  # one copy call: how often the thread checks for a stop, a dropped file or the bound. Each
# call then waits for the GIL that the import holds: copying 2 GiB during `import torch` on a 16-core server took
# 1.6 s in 64 MB calls, 1.0-1.2 s in 1 GB calls, 0.7-1.0 s with nothing importing


@dataclass(frozen=True)
class Stored:
    """A tensor as the input stores it: what the output's copy of it is planned from."""
    name: str
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]
    file: Path
    offset: int

    @property
    def nbytes(self) -> int:
        return numel(self.shape) * DTYPE_SIZES[self.dtype]


@dataclass(frozen=True)
class Run:
    """Tensors stored back to back in one input file and planned back to back in the output: copied as one range,
    so the copying thread asks for the GIL (which the import holds, in 5 ms turns) once a run, not once a tensor."""
    tensors: tuple[Stored, ...]
    at: int  # output offset of the first tensor

    @property
    def nbytes(self) -> int:
        return sum(stored.nbytes for stored in self.tensors)

    def truncated_tensor(self, size: int) -> Stored:
        """The first tensor of the run that an input file of `size` bytes does not hold whole."""
        return next((stored for stored in self.tensors if stored.offset + stored.nbytes > size), self.tensors[-1])


@dataclass(frozen=True)
class PlannedFile:
    name: str
    header: bytes
    tensors: list[tuple[Stored, int]]  # each input tensor and the output offset it is copied to, in output order
    before: int  # bytes planned in earlier files: the file's place in the copying order

    @property
    def seeds(self) -> dict[str, tuple[Path, int]]:
        """Tensor -> (input file, data offset) its bytes are copied from: what the writer's own seeds must be."""
        return {stored.name: (stored.file, stored.offset) for stored, _ in self.tensors}

    @property
    def runs(self) -> list[Run]:
        """The tensors in output order, grouped into runs (a default-preset model: one run per input shard, not ~200 tensors)."""
        runs: list[Run] = []
        for stored, at in self.tensors:
            last = runs[-1] if runs else None
            if last and last.tensors[-1].file == stored.file and last.tensors[-1].offset + last.tensors[-1].nbytes == stored.offset \
                    and last.at + last.nbytes == at:
                runs[-1] = Run((*last.tensors, stored), last.at)
            else:
                runs.append(Run((stored,), at))
        return runs

    @property
    def end(self) -> int:
        return len(self.header) + sum(stored.nbytes for stored, _ in self.tensors)

    def position(self, at: int) -> int:
        """Output offset `at` in the copying order of all planned files, which the look-ahead bound counts in."""
        return self.before + at - len(self.header)


def head_start(source: str, output: str, overwrite: bool, inputs: Sequence[str], prefix: str, max_shard_size: str | int,
               floats_only: bool, embeddings: "EmbeddingFile | None" = None) -> "HeadStart | None":
    """Start copying the `prefix` files the command is expected to write from the local model `source`: every
    tensor (floats_only: every floating-point one) in its stored order, dtype and layout; with `embeddings`
    (extract's chat_embeddings), then one file of its input embedding and output head, named from config.json
    by the merge's rules (passed in: the layout of a file is this package's concern, which weight is an
    embedding is not). None where no head start applies (a hub id, .bin weights) or where the command will refuse its
    input: it reports that itself."""
    try:
        model_dir, out = Path(source).expanduser(), Path(output).expanduser().absolute()
        if not model_dir.is_dir() or not out.parent.is_dir():  # a hub id; an output folder the command itself will create
            return None
        files, form = weight_files(model_dir.resolve(), "model")
        if form != "safetensors":
            return None
        check_output(out, overwrite, [Path(i).expanduser() for i in inputs])
        stored = {name: Stored(name, dtype, shape, file, offset) for file in files for name, (dtype, shape, offset) in read_header(file)[0].items()}
        shards = plan_shards([s for s in stored.values() if not floats_only or s.dtype in FLOAT_DTYPES], parse_size(max_shard_size), prefix)
        if embeddings and (whole := _embeddings(model_dir, stored, embeddings)):
            shards += plan_shards(whole, ONE_SHARD, embeddings.prefix)
        partial = partial_dir(out)
    except (ChatVectorError, OSError, ValueError):
        return None
    planned, before = [], 0
    for name, group in shards:
        header, starts = header_bytes([(s.name, s.dtype, s.shape, s.nbytes) for s in group])
        planned.append(PlannedFile(name, header, [(s, starts[s.name]) for s in group], before))
        before += sum(s.nbytes for s in group)
    return HeadStart(partial, planned)


class _Named(Protocol):
    names: list[str]


@dataclass(frozen=True)
class EmbeddingFile:
    """A file of the input embedding and output head: its prefix, and how to find them from config.json and the
    checkpoint's keys (merge/embeddings.py's known_embedding_keys: None where only the model itself can tell)."""
    prefix: str
    find: Callable[[dict, Collection[str]], _Named | None]


def _embeddings(model_dir: Path, stored: dict[str, Stored], file: EmbeddingFile) -> list[Stored]:
    config = json.loads((model_dir / "config.json").read_text())
    found = file.find(config, stored) if isinstance(config, dict) else None
    return [stored[name] for name in found.names] if found else []


class HeadStart:
    """Copies planned files into `partial` (the output's hidden sibling) on a thread, in order, while the
    writer has not yet asked for more than AHEAD_BYTES less than it has copied."""

    def __init__(self, partial: Path, files: list[PlannedFile]):
        self.partial = partial
        self._files = {f.name: f for f in files}
        self._progress = dict.fromkeys(self._files, 0)  # output offset each file is copied up to
        self._done: set[str] = set()
        self._dropped: set[str] = set()
        self._adopted: set[str] = set()
        self._waiters: list[tuple[str, int, Future]] = []
        self._asked = 0  # the furthest byte, in copying order, that the writer has asked for
        self._busy: str | None = None
        self._stop = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        interrupts.remove_on_exit(partial)
        self._thread = threading.Thread(target=self._run, args=(files,), name="head start", daemon=True)
        self._thread.start()

    def adopt(self, path: Path, header: bytes, seeds: dict[str, tuple[Path, int] | None]) -> bool:
        """Whether the file the writer is about to write is this planned one, byte for byte; if not, it is dropped."""
        planned = self._files.get(path.name) if path.parent == self.partial else None
        if planned is None:
            return False
        if planned.header == header and planned.seeds == seeds:
            with self._cond:
                self._adopted.add(planned.name)
            return True
        self._drop([planned.name])
        return False

    def placed(self, name: str, at: int, nbytes: int) -> Future:
        """Done when bytes [at, at + nbytes) of adopted file `name` are copied."""
        future: Future = Future()
        with self._cond:
            planned = self._files[name]
            self._asked = max(self._asked, planned.position(at + nbytes))
            self._waiters.append((name, at + nbytes, future))
            self._resolve()
            self._cond.notify_all()
        return future

    def release(self) -> None:
        """The writer is done with this head start's files: stop, and delete the planned files it did not adopt."""
        self._drop([name for name in self._files if name not in self._adopted])
        self.close(remove=False)

    def close(self, remove: bool = True) -> None:
        """Stop copying; `remove`: delete the partial output too, if the command has not moved it into place."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        if remove:
            shutil.rmtree(self.partial, ignore_errors=True)
            interrupts.keep_on_exit(self.partial)

    def _drop(self, names: list[str]) -> None:
        with self._cond:
            self._dropped.update(names)
            self._cond.notify_all()
            while self._busy in names:
                self._cond.wait()
        for name in names:
            (self.partial / name).unlink(missing_ok=True)

    def _run(self, files: list[PlannedFile]) -> None:
        sources: dict[Path, int] = {}
        try:
            for planned in files:
                with self._cond:
                    if self._stop:
                        break
                    if planned.name in self._dropped:
                        continue
                    self._busy = planned.name
                self._copy(planned, sources)
                with self._cond:
                    self._busy = None
                    self._done.add(planned.name)
                    self._resolve()
                    self._cond.notify_all()
        except BaseException as e:
            with self._cond:
                self._error = e
        finally:
            for fd in sources.values():
                os.close(fd)
            with self._cond:
                self._busy, self._stop = None, True
                self._resolve()
                self._cond.notify_all()

    def _copy(self, planned: PlannedFile, sources: dict[Path, int]) -> None:
        fd = os.open(self.partial / planned.name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            os.pwrite(fd, planned.header, 0)
            for run in planned.runs:
                file, offset, at, nbytes = run.tensors[0].file, run.tensors[0].offset, run.at, run.nbytes
                if file not in sources:
                    sources[file] = os.open(file, os.O_RDONLY)
                for start in range(0, nbytes, PIECE_BYTES):
                    with self._cond:
                        while not self._gone(planned) and planned.position(at + start) - self._asked >= AHEAD_BYTES:
                            self._cond.wait()
                        if self._gone(planned):
                            return
                    n = min(PIECE_BYTES, nbytes - start)
                    try:
                        copy_range(sources[file], offset + start, fd, at + start, n)
                    except EOFError:
                        raise truncated(file, run.truncated_tensor(os.fstat(sources[file]).st_size).name) from None
                    with self._cond:
                        self._progress[planned.name] = at + start + n
                        self._resolve()
        finally:
            os.close(fd)

    def _gone(self, planned: PlannedFile) -> bool:
        return self._stop or planned.name in self._dropped

    def _resolve(self) -> None:
        """Settle the waiters whose bytes are copied (or can no longer be); the lock is held."""
        waiting = []
        for name, end, future in self._waiters:
            copied = self._progress[name] >= end or name in self._done
            if not copied and self._error is None and not self._stop:
                waiting.append((name, end, future))
            elif not future.set_running_or_notify_cancel():
                continue  # cancelled: the shard is being abandoned
            elif copied:
                future.set_result(None)
            else:
                future.set_exception(self._error or RuntimeError(f"the head start stopped before {name} was copied"))
        self._waiters = waiting
