"""Drive output tensors, chunk of rows by chunk of rows, from their inputs into sharded safetensors."""
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from tqdm import tqdm

from .errors import ChatVectorError
from .writer import SafetensorsWriter, TensorSpec, parse_size, plan_shards, write_index

Dtype = Literal["auto", "bfloat16", "float16", "float32"]
Device = Literal["auto", "cpu", "cuda"]
CHUNK_NUMEL = 8 * 2**20  # elements per chunk: bounds memory whatever the tensor's size


@dataclass(frozen=True)
class OutputTensor:
    spec: TensorSpec
    compute: Callable[[int, int], torch.Tensor]  # rows [start, stop) in spec.dtype


def output_dtype(dtype: str) -> torch.dtype | None:
    """None for 'auto': each tensor keeps the dtype of the model the output is made from."""
    choices = {"auto": None, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    if dtype not in choices:
        raise ChatVectorError(f"--dtype must be one of {', '.join(choices)}, got {dtype!r}")
    return choices[dtype]


def resolve_device(device: str) -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ChatVectorError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ChatVectorError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu" if device == "auto" else device)


def row_ranges(spec: TensorSpec, chunk_numel: int = CHUNK_NUMEL) -> Iterator[tuple[int, int]]:
    rows = spec.shape[0] if spec.shape else 1
    row_numel = max(1, spec.nbytes // spec.dtype.itemsize // max(rows, 1))
    step = max(1, chunk_numel // row_numel)
    for start in range(0, rows, step):
        yield start, min(rows, start + step)
    if rows == 0:
        yield 0, 0


def write_tensors(out_dir: Path, prefix: str, outputs: Sequence[OutputTensor], max_shard_size: str | int, desc: str) -> None:
    """Compute and write every output tensor in order; one chunk of rows in memory at a time."""
    shards = plan_shards([o.spec for o in outputs], parse_size(max_shard_size), prefix)
    by_name = {o.spec.name: o for o in outputs}
    total = sum(o.spec.nbytes for o in outputs)
    with tqdm(total=total, unit="B", unit_scale=True, desc=desc, disable=None, leave=False) as bar:
        for file, specs in shards:
            writer = SafetensorsWriter(out_dir / file, specs)
            for spec in specs:
                for start, stop in row_ranges(spec):
                    chunk = by_name[spec.name].compute(start, stop)
                    writer.write(spec.name, chunk)
                    bar.update(chunk.numel() * chunk.element_size())
            writer.close()
    write_index(out_dir, prefix, shards)
