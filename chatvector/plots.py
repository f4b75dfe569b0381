"""Figures, with matplotlib (imported only here, only by the commands that draw)."""
from pathlib import Path


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
