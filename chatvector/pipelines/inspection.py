"""What a chat vector changes: per layer and module type, streamed a chunk of rows at a time.

For every weight: |delta| (float64), |delta| / |W| where a reference weight is at hand (the model given
with --model, else the vector's base if it is a readable directory, else for the embeddings the base
recovered as chat - delta), the fraction of near-zero entries, and with a second vector the cosine of
the two deltas. Sums of squares and dot products are accumulated per weight, so memory stays a chunk.
"""
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..io.checkpoint import Checkpoint
from ..io.stream import row_ranges
from ..io.writer import TensorSpec
from ..merge.vector import ChatVector

NEAR_ZERO = 1e-6  # |delta| at or below this counts as unchanged (bf16 deltas of tuned weights are ~1e-4 and up)
_LAYER = re.compile(r"^(?:.*\.)?(?:layers|h|layer|blocks)\.(\d+)\.(.+?)(?:\.weight)?$")


def layer_and_module(name: str) -> tuple[int | None, str]:
    """`model.layers.3.self_attn.q_proj.weight` -> (3, 'self_attn.q_proj'); weights outside the layers -> (None, name)."""
    match = _LAYER.match(name)
    return (int(match.group(1)), match.group(2)) if match else (None, name.removesuffix(".weight"))


@dataclass
class WeightStats:
    name: str
    layer: int | None
    module: str
    numel: int
    delta_norm: float
    reference_norm: float | None  # |W| of the reference weight; None when none is at hand
    near_zero: float  # fraction of entries with |delta| <= NEAR_ZERO
    dot: float | None = None  # <delta, delta2> with --compare
    other_norm: float | None = None

    @property
    def relative(self) -> float | None:
        return self.delta_norm / self.reference_norm if self.reference_norm else None

    @property
    def cosine(self) -> float | None:
        return self.dot / (self.delta_norm * self.other_norm) if self.dot is not None and self.delta_norm and self.other_norm else None


@dataclass
class Report:
    weights: list[WeightStats]
    reference: str  # what |W| was taken from
    moved_rows: list[dict] = field(default_factory=list)  # the embedding rows that moved most
    lineage: dict | None = None  # with --model: {"summary": ..., "median": ..., "distances": {weight: d}}

    def layers(self) -> list[int]:
        return sorted({w.layer for w in self.weights if w.layer is not None})

    def modules(self) -> list[str]:
        return sorted({w.module for w in self.weights if w.layer is not None})

    def layer_cosines(self) -> dict[int, float]:
        """Per layer, the cosine of the two vectors restricted to that layer's weights."""
        out = {}
        for layer in self.layers():
            ws = [w for w in self.weights if w.layer == layer and w.dot is not None]
            a, b = sum(w.delta_norm ** 2 for w in ws) ** 0.5, sum(w.other_norm ** 2 for w in ws) ** 0.5
            if ws and a and b:
                out[layer] = sum(w.dot for w in ws) / (a * b)
        return out

    def to_json(self) -> dict:
        weights = [{**asdict(w), "relative": w.relative, "cosine": w.cosine} for w in self.weights]
        return {"reference": self.reference, "near_zero_threshold": NEAR_ZERO, "weights": weights,
                "layer_cosines": self.layer_cosines() or None, "moved_rows": self.moved_rows, "lineage": self.lineage}


def weight_stats(name: str, vector: Checkpoint, reference: Checkpoint | None = None, chat: Checkpoint | None = None,
                 other: Checkpoint | None = None) -> WeightStats:
    """Streamed statistics of one weight; the reference is a model's weight, or chat - delta when only `chat` is given."""
    info = vector.infos[name]
    sums = {"delta": 0.0, "reference": 0.0, "zero": 0, "dot": 0.0, "other": 0.0}
    usable = lambda c: c is not None and name in c.infos and c.infos[name].shape == info.shape  # noqa: E731
    reference, chat, other = (c if usable(c) else None for c in (reference, chat, other))
    for start, stop in row_ranges(TensorSpec(name, info.dtype, info.shape)):
        delta = vector.read(name, start, stop).double()
        sums["delta"] += float((delta * delta).sum())
        sums["zero"] += int((delta.abs() <= NEAR_ZERO).sum())
        if reference is not None or chat is not None:
            weight = reference.read(name, start, stop).double() if reference is not None else chat.read(name, start, stop).double() - delta
            sums["reference"] += float((weight * weight).sum())
        if other is not None:
            second = other.read(name, start, stop).double()
            sums["dot"] += float((delta * second).sum())
            sums["other"] += float((second * second).sum())
    layer, module = layer_and_module(name)
    has_reference = reference is not None or chat is not None
    numel = max(1, torch.Size(info.shape).numel())
    return WeightStats(name, layer, module, numel, sums["delta"] ** 0.5, sums["reference"] ** 0.5 if has_reference else None, sums["zero"] / numel,
                       sums["dot"] if other is not None else None, sums["other"] ** 0.5 if other is not None else None)


def moved_rows(vector: ChatVector, tokenizer_dir: Path | None, count: int = 10) -> list[dict]:
    """The input-embedding rows whose delta is largest, with their token strings."""
    name = vector.embeddings.input
    info = vector.tensors.infos[name]
    norms = torch.cat([vector.tensors.read(name, a, b).double().norm(dim=-1) for a, b in row_ranges(TensorSpec(name, info.dtype, info.shape))])
    top = torch.topk(norms, min(count, len(norms)))
    tokens = [None] * len(top.indices)
    if tokenizer_dir is not None and (tokenizer_dir / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        backend = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        tokens = [backend.id_to_token(int(i)) for i in top.indices]
    return [{"id": int(i), "token": t, "delta_norm": float(v)} for i, t, v in zip(top.indices, tokens, top.values)]


def inspect_vector(path: str, compare: str | None = None, model: str | None = None) -> Report:
    """Statistics of every weight of a chat vector, relative to `model` (or the vector's base, if readable)."""
    from ..io.checkpoint import load_config, resolve_model_dir
    from ..merge.lineage import measure_lineage
    from ..merge.vector import open_chat_vector

    reference_dir = resolve_model_dir(model, "model") if model else _readable_base(path)
    vector = open_chat_vector(path, cp=(reference_dir, load_config(reference_dir, "model")) if reference_dir else None)
    second = open_chat_vector(compare) if compare else None
    reference = Checkpoint(reference_dir) if reference_dir else None
    try:
        names = [n for n in vector.tensors.infos if vector.tensors.infos[n].is_float]
        weights = [weight_stats(n, vector.tensors, reference, vector.chat_embeddings, second.tensors if second else None) for n in names]
        lineage = measure_lineage(reference, vector) if model and reference else None
        where = f"model {model}" if model else f"base {vector.meta.get('base_model')}" if reference else \
            "none (embeddings: chat - delta); pass --model for the rest"
        found = {"summary": lineage.summary(), "median": lineage.median, "distances": lineage.distances} if lineage else None
        return Report(weights, where, moved_rows(vector, vector.chat_dir), found)
    finally:
        for opened in (vector, second, reference):
            if opened is not None:
                opened.close()


def _readable_base(path: str) -> Path | None:
    """The vector's base model, when chat_vector.json names a directory that is here."""
    import json

    from ..io.checkpoint import resolve_model_dir

    meta_path = resolve_model_dir(path, "chat vector") / "chat_vector.json"
    base = json.loads(meta_path.read_text()).get("base_model") if meta_path.is_file() else None
    return Path(base).resolve() if base and (Path(base) / "config.json").is_file() else None


def table(report: Report) -> str:
    """Layers x module types: relative change in % where a reference is at hand, else |delta|."""
    relative = all(w.relative is not None for w in report.weights if w.layer is not None)
    modules, cosines = report.modules(), report.layer_cosines()
    value = lambda w: f"{100 * w.relative:.2f}%" if relative else f"{w.delta_norm:.3g}"  # noqa: E731
    by_key = {(w.layer, w.module): w for w in report.weights}
    head = ["layer", *modules, *(["cosine"] if cosines else [])]
    lines = [f"{'|Δ|/|W|' if relative else '|Δ|'} per layer and module (reference: {report.reference})",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for layer in report.layers():
        cells = [value(by_key[layer, m]) if (layer, m) in by_key else "" for m in modules]
        lines.append(f"| {layer} | " + " | ".join(cells) + (f" | {cosines[layer]:.3f}" if layer in cosines else "") + " |")
    for w in report.weights:
        if w.layer is None:
            rel = f", {100 * w.relative:.2f}% of |W|" if w.relative is not None else ""
            cos = f", cosine {w.cosine:.3f}" if w.cosine is not None else ""
            lines.append(f"{w.name}: |Δ| {w.delta_norm:.4g}{rel}, {100 * w.near_zero:.1f}% near zero{cos}")
    if report.moved_rows:
        lines.append("embedding rows that moved most: " + ", ".join(f"{r['id']} {r['token']!r} ({r['delta_norm']:.3g})" for r in report.moved_rows))
    if report.lineage:
        lines.append(f"lineage: the model's distance from the vector's base: {report.lineage['summary']}")
    return "\n".join(lines)


def heatmap(report, path: Path) -> None:
    """Layers x module types, coloured by relative change (or |delta| without a reference)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    layers, modules = report.layers(), report.modules()
    by_key = {(w.layer, w.module): w for w in report.weights}
    relative = all(w.relative is not None for w in report.weights if w.layer is not None)
    grid = [[(by_key[layer, m].relative if relative else by_key[layer, m].delta_norm) if (layer, m) in by_key else float("nan")
             for m in modules] for layer in layers]
    figure, axes = plt.subplots(figsize=(2.5 + 0.9 * len(modules), 3.5 + 0.3 * len(layers)))
    image = axes.imshow(grid, aspect="auto", cmap="viridis")
    axes.set_xticks(range(len(modules)), modules, rotation=45, ha="right")
    axes.set_yticks(range(len(layers)), layers)
    axes.set_ylabel("layer")
    figure.colorbar(image, ax=axes, label="|Δ| / |W|" if relative else "|Δ|")
    axes.set_title(f"chat vector per layer and module\n(reference: {report.reference})", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
