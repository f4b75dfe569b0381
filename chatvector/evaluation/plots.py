"""Figures, with matplotlib (imported only here, only by the commands that draw)."""
from pathlib import Path


def sweep_plot(table: list[dict], target: str, recommended, path: Path, title: str) -> None:
    """Target-language, end-of-turn and loop rates against the ratio; the recommended ratio marked (700x400 px)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    numeric = all(not isinstance(row["ratio"], list) for row in table)
    xs = [row["ratio"] if numeric else i for i, row in enumerate(table)]
    figure, axes = plt.subplots(figsize=(7, 4))
    for key, label, style in (("target_language_rate", f"replies in {target}", "o-"), ("ended_turn_rate", "ended turn (eos)", "s-"),
                              ("loop_rate", "degenerate loops", "^--")):
        axes.plot(xs, [row[key] for row in table], style, label=label)
    if recommended is not None:
        at = next(x for x, row in zip(xs, table) if row["ratio"] == recommended)
        axes.axvline(at, color="grey", linestyle=":", label=f"recommended: {recommended}")
    if not numeric:
        axes.set_xticks(xs, [str(row["ratio"]) for row in table], rotation=30, ha="right")
    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel("ratio")
    axes.set_ylabel("share of replies")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
