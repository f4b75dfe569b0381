"""The sweep's figure, with matplotlib (imported only here, only when a sweep writes its summary)."""
from pathlib import Path


def sweep_plot(table: list[dict], target: str, recommended, path: Path, title: str) -> None:
    """Against the ratio: replies in the target language, instructions followed (loose, with its 95 % band), the turn
    ended, and with safety prompts harmful and benign prompts refused; the recommended ratio marked (700x400 px)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    numeric = all(not isinstance(row["ratio"], list) for row in table)
    xs = [row["ratio"] if numeric else i for i, row in enumerate(table)]
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(xs, [row["target_language_rate"] for row in table], "o-", label=f"replies in {target}")
    if all("instructions" in row for row in table):
        figures = [row["instructions"]["instruction_loose"] for row in table]
        line, = axes.plot(xs, [f["rate"] for f in figures], "D-", label="instructions followed (loose)")
        axes.fill_between(xs, [f["ci95"][0] for f in figures], [f["ci95"][1] for f in figures], color=line.get_color(), alpha=0.15)
    axes.plot(xs, [row["ended_turn_rate"] for row in table], "s--", alpha=0.6, label="ended turn (eos)")
    if all("safety" in row for row in table):
        axes.plot(xs, [row["safety"]["refusal_rate"]["rate"] for row in table], "^-", label="harmful prompts refused")
        axes.plot(xs, [row["safety"]["over_refusal_rate"]["rate"] for row in table], "v:", label="benign prompts refused")
    if recommended is not None:
        at = next(x for x, row in zip(xs, table) if row["ratio"] == recommended)
        axes.axvline(at, color="grey", linestyle=":", label=f"recommended: {recommended}")
    if not numeric:
        axes.set_xticks(xs, [str(row["ratio"]) for row in table], rotation=30, ha="right")
    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel("ratio")
    axes.set_ylabel("share of replies")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=7, loc="best")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
