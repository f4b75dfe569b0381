"""Drive output tensors, chunk of rows by chunk of rows, from their inputs into sharded safetensors."""
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from .errors import ChatVectorError
from .writer import SafetensorsWriter, TensorSpec, parse_size, plan_shards, write_index

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Device = Literal["auto", "cpu", "cuda"]
CHUNK_NUMEL = 4 * 2**20  # elements per chunk: bounds memory whatever the tensor's size


@dataclass(frozen=True)
class OutputTensor:
    spec: TensorSpec
    compute: Callable[[int, int], torch.Tensor]  # rows [start, stop) in spec.dtype


def copy_tensor(name: str, source) -> OutputTensor:
    """A tensor of a Checkpoint written as it is stored, streamed a chunk of rows at a time."""
    info = source.infos[name]
    return OutputTensor(TensorSpec(name, info.dtype, info.shape), lambda start, stop: source.read(name, start, stop))


def output_dtype(dtype: Dtype) -> torch.dtype | None:
    """None for 'auto': each tensor keeps the dtype of the model the output is made from."""
    choices = {"auto": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in choices:
        raise ChatVectorError(f"--dtype must be one of {', '.join(choices)}, got {dtype!r}")
    return choices[dtype]


def resolve_device(device: Device, auto_gpu: bool = False) -> torch.device:
    """`auto` is the CPU for streaming arithmetic: on an H100 server the GPU did not beat the CPU (the bottleneck is
    writing; extract 4.2 s on cuda vs 3.4 s on cpu, add 3.4 vs 3.7 s, 1.1B bf16), and CUDA start-up costs time.
    With auto_gpu (chat: generation is compute-bound) `auto` takes the GPU when there is one."""
    if device not in ("auto", "cpu", "cuda"):
        raise ChatVectorError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ChatVectorError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device == "auto":
        return torch.device("cuda" if auto_gpu and torch.cuda.is_available() else "cpu")
    return torch.device(device)


def row_ranges(spec: TensorSpec, chunk_numel: int = CHUNK_NUMEL) -> Iterator[tuple[int, int]]:
    rows = spec.shape[0] if spec.shape else 1
    row_numel = max(1, spec.nbytes // spec.dtype.itemsize // max(rows, 1))
    step = max(1, chunk_numel // row_numel)
    for start in range(0, rows, step):
        yield start, min(rows, start + step)
    if rows == 0:
        yield 0, 0


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Elementwise work on a chunk is memory-bound and writing is the bottleneck: more OpenMP threads only
    spin-wait and take the cores the writer needs. Measured on a 1.1B add at ratio 0.3: here (2 cores)
    7.3-7.7 s with 1 thread, 8.2-8.8 s with 2; on a 16-core server 9.6-10.8 s with 1, 9.1-9.6 s with 4,
    9.5-10.1 s with 8, 9.7-10.5 s with 14 (user CPU 13 -> 85 s): within run-to-run noise, at 6x the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def write_tensors(out_dir: Path, prefix: str, outputs: Sequence[OutputTensor], max_shard_size: str | int, desc: str) -> None:
    """Compute and write every output tensor in order, a chunk of rows at a time.

    A background thread writes chunk n while chunk n+1 is read and computed: the two overlap on two
    cores. A chunk is computed into one of two alternating buffers (Checkpoint.read, Workspace.output),
    so it is never overwritten before its write finished: we wait for write n before handing over n+1.
    """
    shards = plan_shards([o.spec for o in outputs], parse_size(max_shard_size), prefix)
    by_name = {o.spec.name: o for o in outputs}
    total = sum(o.spec.nbytes for o in outputs)
    with _one_torch_thread(), tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None, leave=False) as bar, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer") as pool:
        for file, specs in shards:
            writer = SafetensorsWriter(out_dir / file, specs)
            pending: Future | None = None
            for spec in specs:
                for start, stop in row_ranges(spec):
                    chunk = by_name[spec.name].compute(start, stop)
                    if pending is not None:
                        pending.result()
                    pending = pool.submit(writer.write, spec.name, chunk)
                    bar.update(chunk.numel() * chunk.element_size())
            if pending is not None:
                pending.result()
            writer.close()
    write_index(out_dir, prefix, shards)
