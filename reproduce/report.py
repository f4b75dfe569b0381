"""What a reproduction writes: its table, the sweep check, its plot, and the ablation over every recorded variant."""
import json
from pathlib import Path


def write(result: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown(result), encoding="utf-8")
    plot(result, out / "reproduce.png")
    if not result["quick"]:
        (out.parent / "ablation.md").write_text(ablation(out.parent), encoding="utf-8")


def markdown(result: dict) -> str:
    lines = ["| model | task success (asked in B) | replies in B | ended turn | task success (asked in A) |", "|---|---:|---:|---:|---:|"]
    for row in result["table"]:
        lines.append(f"| {row['model']} | {row['success_B']:.1%} | {row['replies_in_B']:.1%} | {row['ended_turn_B']:.1%} | "
                     f"{row['success_A']:.1%} |")
    threads = result["threads"]
    note = (f"Variant `{result['variant']['name']}`; {result['eval_tasks']} held-out tasks per language, greedy; "
            f"{result['parameters']:,} parameters; {result['seconds']} s on {threads} thread{'s' * (threads != 1)}, {result['date']}.")
    return "\n".join(lines) + f"\n\n{note}\n\n{sweep_markdown(result['sweep'])}"


def sweep_markdown(sweep: dict) -> str:
    lines = [f"sweep_ratios.py on the same CP and vector, `--language {sweep['language']}`, the held-out B tasks as IFEval rows "
             "(`startend:end_checker`, the exact answer):", "",
             "| ratio | task success in B (measured) | replies in B (measured) | instructions followed (sweep, loose) | "
             f"replies in {sweep['language']} (sweep) | ended turn (sweep) |", "|---:|---:|---:|---:|---:|---:|"]
    for row in sweep["ratios"]:
        lines.append(f"| {row['ratio']} | {row['success_B']:.1%} | {row['replies_in_B']:.1%} | {row['sweep_if_loose']:.1%} | "
                     f"{row['sweep_in_language']:.1%} | {row['sweep_ended_turn']:.1%} |")
    verdict = "agree" if sweep["agrees"] else "disagree"
    return "\n".join(lines) + (f"\n\nAt ≥ {sweep['min_language_rate']:.0%} replies in B, the sweep recommends ratio "
                               f"{sweep['recommended']} and the measured task success picks {sweep['ground_truth']}: they {verdict}. "
                               f"The sweep's reason: {sweep['reason']}.\n")


def ablation(results: Path) -> str:
    """Every recorded full run side by side: task success in B / replies in B / ended turn at each ratio. The thread count
    is a column because it changes the training's rounding, and at this scale that can change the outcome."""
    runs = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(results.glob("full*/results.json"))]
    runs = sorted((run for run in runs if "variant" in run), key=lambda run: (run["variant"]["name"], run["seed"], run["threads"]))
    ratios = sorted({row["ratio"] for run in runs for row in run["table"] if row["ratio"] is not None})
    head = ["variant", "seed, threads", "chat, success in A", *(f"r = {r:g}" for r in ratios), "CP→FT", "sweep picks / truth picks"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for run in runs:
        rows = {row["model"]: row for row in run["table"]}
        by_ratio = {row["ratio"]: row for row in run["table"] if row["ratio"] is not None}
        cells = [f"{by_ratio[r]['success_B']:.0%} / {by_ratio[r]['replies_in_B']:.0%} / {by_ratio[r]['ended_turn_B']:.0%}"
                 if r in by_ratio else "" for r in ratios]
        sweep = run["sweep"]
        lines.append(f"| {run['variant']['name']} | {run['seed']}, {run['threads']} | {rows['chat']['success_A']:.0%} | " + " | ".join(cells) +
                     f" | {rows['CP→FT']['success_B']:.0%} | {sweep['recommended']} / {sweep['ground_truth']} |")
    return ("Each cell: task success asked in B / replies in B / ended turn, over the held-out tasks; r = 0 is the CP alone.\n\n"
            + "\n".join(lines) + "\n")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [row for row in result["table"] if row["ratio"] is not None and not row["model"].startswith("CP→FT")]
    xs = [row["ratio"] for row in series]
    figure, axes = plt.subplots(figsize=(7, 4))
    for key, label, style in (("success_B", "task success (asked in B)", "o-"), ("replies_in_B", "replies in B", "s-"),
                              ("ended_turn_B", "ended turn", "^--")):
        axes.plot(xs, [row[key] for row in series], style, label=label)
    rows = {row["model"]: row for row in result["table"]}
    axes.axhline(rows["chat"]["success_A"], color="black", linestyle="-.", label="chat model's task success (asked in A)")
    axes.axhline(rows["CP→FT"]["success_B"], color="grey", linestyle=":", label="CP→FT task success")
    axes.set_xlabel("ratio r in CP + r·CV (0 = CP alone)")
    axes.set_ylim(-0.03, 1.03)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    axes.set_title(f"synthetic languages (variant {result['variant']['name']}): chat vector from A, CP in B", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
