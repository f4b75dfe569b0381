"""Drive output tensors, chunk of rows by chunk of rows, from their inputs into sharded safetensors."""
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from tqdm import tqdm

from ..errors import ChatVectorError
from .filemap import room_to_write_in_place
from .layout import parse_size, plan_shards, truncated
from .writer import SafetensorsWriter, TensorSpec, safetensors_header, write_index

if TYPE_CHECKING:
    from .headstart import HeadStart

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Device = Literal["auto", "cpu", "cuda"]
CHUNK_NUMEL = 4 * 2**20  # elements per computed chunk: bounds memory whatever the tensor's size
SEEDED_CHUNK_NUMEL = 16 * 2**20  # elements per seed copy: few, large calls
MAX_CHUNK_WORKERS = 4  # see chunk_workers
QUEUED_CHUNKS = 2 * MAX_CHUNK_WORKERS  # chunks queued for the workers, none of whom then waits for the main thread;
# a chunk is mapped only once a worker takes it
LOOKAHEAD_BYTES = 256 * 2**20  # seed bytes copied ahead of the arithmetic: enough to never wait, little dirty page cache


@dataclass(frozen=True)
class Seed:
    """Stored bytes an output tensor starts from, in its dtype and layout (the chat model's for a vector, the CP's for a merge)."""
    file: Path
    fd: int  # the Checkpoint's own descriptor, open until it closes
    offset: int


@dataclass(frozen=True)
class OutputTensor:
    """How to produce one output tensor: `compute(start, stop, into)` returns rows [start, stop) in spec.dtype.
    With a seed (CPU only), the stored bytes are first copied into the output in the kernel, as `cp` does, and
    the rows are then computed over them (unless the seed is the result): `into` is then a writable view of
    those rows in the output file, to compute into (a result elsewhere is copied there); None where the rows
    go to a fresh place or through write calls. The copy places the pages: writing into new page-cache pages
    was 2-5x slower and erratic on our VMs. Computing into the view saves a write call's copy; reading it
    first would cost a second page fault per page (add's arithmetic 0.75 s -> 1.05 s on 2 cores): read the inputs."""
    spec: TensorSpec
    compute: Callable[[int, int, torch.Tensor | None], torch.Tensor]
    seed: Seed | None = None
    seed_is_result: bool = False


def seed_of(source, name: str) -> Seed | None:
    """Where a Checkpoint tensor's bytes lie in a safetensors file (None: in a pickle)."""
    info = source.infos[name]
    return Seed(info.file, source.fd(info.file), info.offset) if info.offset >= 0 else None


def copy_tensor(name: str, source) -> OutputTensor:
    """A tensor of a Checkpoint written as it is stored."""
    info = source.infos[name]
    return OutputTensor(TensorSpec(name, info.dtype, info.shape), lambda start, stop, into: source.read(name, start, stop),
                        seed_of(source, name), seed_is_result=True)


def output_dtype(dtype: Dtype) -> torch.dtype | None:
    """None for 'auto': each tensor keeps the dtype of the model the output is made from."""
    choices = {"auto": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in choices:
        raise ChatVectorError(f"--dtype must be one of {', '.join(choices)}, got {dtype!r}")
    return choices[dtype]


def resolve_device(device: Device, auto_gpu: bool = False) -> torch.device:
    """`auto` is the CPU for streaming arithmetic: on an H100 server the GPU was slower than 16 cores (extract 3.8 s on
    cuda vs 3.0 s on cpu, add 3.6 vs 3.2 s, 1.1B bf16): the CPU copies the outputs in the kernel while torch
    imports and computes faster than rows are written; the GPU waits for CUDA and moves every row both ways.
    With auto_gpu (chat: generation is compute-bound) `auto` takes the GPU when there is one."""
    if device not in ("auto", "cpu", "cuda"):
        raise ChatVectorError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ChatVectorError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device == "auto":
        return torch.device("cuda" if auto_gpu and torch.cuda.is_available() else "cpu")
    return torch.device(device)


def rows_per_chunk(spec: TensorSpec, chunk_numel: int) -> int:
    return max(1, chunk_numel // max(1, spec.row_bytes // spec.dtype.itemsize))


def row_ranges(spec: TensorSpec, chunk_numel: int = CHUNK_NUMEL) -> Iterator[tuple[int, int]]:
    rows = spec.shape[0] if spec.shape else 1
    step = rows_per_chunk(spec, chunk_numel)
    for start in range(0, rows, step):
        yield start, min(rows, start + step)
    if rows == 0:
        yield 0, 0


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def arithmetic_threads(outputs: Sequence[OutputTensor], head: "HeadStart | None" = None) -> int:
    """Every core with a head start (its copies ran during the import: by now they are done or nearly; a file
    it planned differently is then copied by the writer thread, on every core too); without one, every core but
    one where the writer thread copies the seeds meanwhile; one where the writer thread writes
    every computed chunk, which then needs the other core (7.3-7.7 s with 1 thread, 8.2-8.8 s with 2).
    Measured on 2 cores, seeds already copied, 3 rounds: add's arithmetic and writes 1.06-1.09 s on one
    thread, 0.84-0.91 s on two."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if head is not None:
        return cores
    return max(1, cores - 1) if any(o.seed and not o.seed_is_result for o in outputs) else 1


def chunk_workers(threads: int) -> int:
    """Threads that each take whole chunks computed into the file: map the inputs, compute, unmap. With one thread
    that maps and unmaps while torch's other threads wait, the second core idled half the time (perf, 2 cores):
    page-table work is a third of the main thread's. At most MAX_CHUNK_WORKERS, each kernel on threads // workers
    threads, so that the GIL and the process's mapping lock stay uncontended on many cores."""
    return max(1, min(threads, MAX_CHUNK_WORKERS))


def write_tensors(out_dir: Path, prefix: str, outputs: Sequence[OutputTensor], max_shard_size: str | int, desc: str,
                  head: "HeadStart | None" = None) -> None:
    """Produce and write every output tensor in order, a chunk of rows at a time, into sharded safetensors.
    A file the head start has planned identically is adopted: its seeds are copied there, not here. The caller
    releases the head start once it has written every file the head start may have planned."""
    shards = plan_shards([o.spec for o in outputs], parse_size(max_shard_size), prefix)
    by_name = {o.spec.name: o for o in outputs}
    total = sum(o.spec.nbytes for o in outputs)
    over_seeds = sum(o.spec.nbytes for o in outputs if o.seed and not o.seed_is_result)
    threads = arithmetic_threads(outputs, head)
    workers = chunk_workers(threads) if over_seeds and room_to_write_in_place(out_dir, over_seeds) else 0
    with _torch_threads(max(1, threads // max(1, workers))), ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer") as pool, \
            (ThreadPoolExecutor(workers, thread_name_prefix="arithmetic") if workers else nullcontext()) as computing, tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None, leave=False) as bar:
        for file, specs in shards:
            shard = [by_name[spec.name] for spec in specs]
            seeds = {o.spec.name: (o.seed.file, o.seed.offset) if o.seed else None for o in shard}
            placed = head is not None and head.adopt(out_dir / file, safetensors_header(specs)[0], seeds)
            writer = SafetensorsWriter(out_dir / file, specs, placed=placed)
            try:
                _fill(writer, shard, pool, bar, head if placed else None, computing)
            except BaseException:
                writer.abort()
                raise
            writer.close()
    write_index(out_dir, prefix, shards)


def _fill(writer: SafetensorsWriter, outputs: list[OutputTensor], pool: ThreadPoolExecutor, bar, head: "HeadStart | None",
          computing: ThreadPoolExecutor | None) -> None:
    """Write one shard's tensors. The writer thread places chunk n (a seed copy or computed rows) while the
    main thread computes another; rows over a seed are computed into the file by the chunk workers (`computing`),
    or, without them, here with write calls. Seed copies run up to LOOKAHEAD_BYTES ahead (in an adopted file, the
    head start copies them). A computed chunk lies in one of two alternating buffers (Checkpoint.read,
    Workspace.output), so we wait for write n before handing over n + 1, which is never computed into write n's buffer."""
    chunks = [(o, start, stop) for o in outputs for start, stop in row_ranges(o.spec, SEEDED_CHUNK_NUMEL if o.seed else CHUNK_NUMEL)]
    copies: dict[int, Future] = {}
    pending: list[Future] = []
    running: deque[Future] = deque()
    try:
        _fill_chunks(writer, chunks, pool, bar, copies, pending, head, computing, running)
    except BaseException:
        for future in (*copies.values(), *running):  # the file is abandoned: stop what has not started, let the rest finish
            future.cancel()
        wait([*copies.values(), *pending, *running])
        raise


def _fill_chunks(writer, chunks, pool, bar, copies: dict[int, Future], pending: list[Future], head, computing, running: deque[Future]) -> None:
    ahead, queued = 0, 0
    for i, (output, start, stop) in enumerate(chunks):
        while queued < len(chunks) and (queued <= i or ahead < LOOKAHEAD_BYTES):
            o, a, b = chunks[queued]
            if o.seed is not None:
                row_bytes = o.spec.row_bytes
                at = writer.reserve(o.spec.name, (b - a) * row_bytes)  # here, in order: the copies may finish in any order
                if head is not None:
                    copies[queued] = head.placed(writer.path.name, at, (b - a) * row_bytes)
                else:
                    copies[queued] = pool.submit(_copy_seed, writer, at, o, a * row_bytes, (b - a) * row_bytes)
                ahead += (b - a) * row_bytes
            queued += 1
        row_bytes = output.spec.row_bytes
        if output.seed is not None:
            copies.pop(i).result()
            ahead -= (stop - start) * row_bytes
            if not output.seed_is_result:
                step = rows_per_chunk(output.spec, CHUNK_NUMEL)
                for a in range(start, stop, step):
                    if computing is None:
                        _compute_over_seed(writer, output, a, min(stop, a + step), False)
                        continue
                    running.append(computing.submit(_compute_over_seed, writer, output, a, min(stop, a + step), True))
                    while len(running) > QUEUED_CHUNKS:
                        running.popleft().result()
        else:
            chunk = output.compute(start, stop, None)
            if pending:
                pending.pop().result()
            pending.append(pool.submit(writer.write, output.spec.name, chunk))
        bar.update((stop - start) * row_bytes)
    while running:
        running.popleft().result()
    if pending:
        pending.pop().result()


def _compute_over_seed(writer: SafetensorsWriter, output: OutputTensor, start: int, stop: int, in_place: bool) -> None:
    """Rows [start, stop), whose seed is placed, computed into their place in the file (in_place) or written over it."""
    spec = output.spec
    at, nbytes = start * spec.row_bytes, (stop - start) * spec.row_bytes
    into = writer.placed_rows(spec.name, at, nbytes) if in_place else None
    if into is None:
        writer.overwrite(spec.name, at, output.compute(start, stop, None))
        return
    into = into.view((stop - start, *spec.shape[1:]) if spec.shape else ())
    result = output.compute(start, stop, into)
    if result.data_ptr() != into.data_ptr():
        into.copy_(result)


def _copy_seed(writer: SafetensorsWriter, at: int, output: OutputTensor, start: int, nbytes: int) -> None:
    try:
        writer.copy(at, output.seed.fd, output.seed.offset + start, nbytes)
    except EOFError:
        raise truncated(output.seed.file, output.spec.name) from None
