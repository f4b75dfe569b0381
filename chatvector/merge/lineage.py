"""Does a CP descend from a chat vector's base? A seeded sample of the base's weights, compared before any merge.

Extract stores, for every floating-point weight, the base model's values at a few fixed spans of
elements (`sample_spans`: 4 runs of 512, placed by a generator seeded with the weight's name, so
anyone can recompute them). Before merging, the CP's values at the same spans are read and each
weight's relative distance d = |W_cp - W_base| / |W_base| is computed on the sample. Continual
pre-training moves weights a little (d well below 1); an unrelated model of the same shape sits near
sqrt(2) = 1.41, the distance between independent weights of equal size.
"""
import json
import math
import random
import sys
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import ChatVectorError

FINGERPRINT_FILE = "base_fingerprint.safetensors"
RULE = "crc32-spans-v1"  # how positions are chosen; stored in chat_vector.json
SPANS, SPAN = 4, 512
FAIL_ABOVE, WARN_ABOVE = 0.75, 0.35  # median d over the weight matrices


def sample_spans(name: str, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """Flat element ranges [start, stop) sampled from a weight: the whole weight if it is small."""
    numel = math.prod(shape)
    if numel <= SPANS * SPAN:
        return [(0, numel)]
    generator = random.Random(zlib.crc32(name.encode()))
    return [(s, s + SPAN) for s in sorted(generator.randrange(0, numel - SPAN + 1) for _ in range(SPANS))]


def read_sample(checkpoint, name: str) -> torch.Tensor:
    info = checkpoint.infos[name]
    return torch.cat([checkpoint.read_elements(name, a, b) for a, b in sample_spans(name, info.shape)])


def write_fingerprint(base, names: Iterable[str], out_dir: Path) -> None:
    """The base's sampled values, one small tensor per weight (about 4 KB each: 3 MB for a 70B model)."""
    from safetensors.torch import save

    names = list(names)
    shapes = json.dumps({name: list(base.infos[name].shape) for name in names})  # the spans depend on the shape
    sample = save({name: read_sample(base, name) for name in names}, metadata={"rule": RULE, "shapes": shapes})
    (out_dir / FINGERPRINT_FILE).write_bytes(sample)


@dataclass(frozen=True)
class Lineage:
    distances: dict[str, float]  # weight -> relative distance on the sample
    matrices: list[str]  # the weights with two or more dimensions: the ones that decide

    @property
    def median(self) -> float:
        values = sorted(self.distances[n] for n in self.matrices) or [0.0]
        return values[len(values) // 2]

    def worst(self, count: int = 3) -> list[tuple[str, float]]:
        return sorted(((n, self.distances[n]) for n in self.matrices), key=lambda item: -item[1])[:count]

    def summary(self) -> str:
        worst = ", ".join(f"{n} {d:.2f}" for n, d in self.worst())
        return f"median relative distance {self.median:.3f} over {len(self.matrices)} weight matrices (largest: {worst})"


def measure_lineage(cp, vector) -> Lineage | None:
    """The CP's distance from the vector's base on the fingerprint; None when the vector has none."""
    path = vector.dir / FINGERPRINT_FILE
    if not path.is_file():
        return None
    from safetensors import safe_open

    distances, matrices = {}, []
    with safe_open(str(path), framework="pt") as sample:
        metadata = sample.metadata() or {}
        if metadata.get("rule") != RULE:
            raise ChatVectorError(f"{path} was sampled by rule {metadata.get('rule')!r}, which this chatvector does not know; upgrade chatvector")
        shapes = {name: tuple(shape) for name, shape in json.loads(metadata["shapes"]).items()}
        for name in sample.keys():
            info = cp.infos.get(name)
            if info is None or not info.is_float or info.shape != shapes.get(name):
                continue  # absent, or an embedding of another vocabulary size: its spans do not line up
            base = sample.get_tensor(name).double()
            scale = base.norm().item()
            if scale == 0:
                continue
            distances[name] = (read_sample(cp, name).double() - base).norm().item() / scale
            if len(info.shape) >= 2:
                matrices.append(name)
    return Lineage(distances, matrices)


def verify_lineage(cp, vectors, what: str = "CP model") -> dict[str, str]:
    """Refuse a CP that does not descend from a vector's base; returns a line per vector for the model card."""
    report = {}
    for vector in vectors:
        lineage = measure_lineage(cp, vector)
        base = vector.meta.get("base_model", "?")
        if lineage is None:
            print(f"note: chat vector {vector.path} has no base fingerprint (extracted by an older version); lineage not checked", file=sys.stderr)
            report[vector.path] = "not checked (no fingerprint)"
            continue
        if lineage.median > FAIL_ABOVE:
            raise ChatVectorError(
                f"the {what} does not descend from {base}, the base of chat vector {vector.path}: on a fixed sample of its weights "
                f"it is at {lineage.summary()}, where a model trained from that base stays well below {FAIL_ABOVE} and an unrelated "
                f"one is near 1.41; use the model trained from {base}, or pass --check_lineage False to merge anyway")
        if lineage.median > WARN_ABOVE:
            print(f"warning: the {what} is far from {base}, the base of chat vector {vector.path} ({lineage.summary()}); "
                  "check that it was trained from that base", file=sys.stderr)
        report[vector.path] = lineage.summary()
    return report
