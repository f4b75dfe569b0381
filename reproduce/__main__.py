"""`make reproduce`: the paper's effect at laptop scale, with the toolkit's own extract and add.

    python -m reproduce [--quick] [--out reproduce/results] [--cache reproduce/cache]

Trains tiny Llama models on CPU with fixed seeds (cached, so reruns only evaluate):
  base     pre-trained on plain text in languages A (90 %) and B (10 %)
  chat     base tuned on chat-template instructions in A only
  CP       base continually pre-trained on plain text in B only
  CP→FT    CP tuned on a small instruction set in B (the paper's stronger baseline)
then builds CP + r·CV (CV = chat − base) with chatvector's extract and add, and measures, on held-out
instructions asked in B: task success, replies in B, and end-of-turn rate (the paper's Tables 1 and 7).
"""
import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reproduce import world  # noqa: E402

FULL = dict(base_steps=2400, chat_steps=600, cp_steps=1200, ft_steps=300, ft_examples=200, eval_tasks=300, batch=64,
            ratios=[0.25, 0.5, 0.75, 1.0, 1.25])
QUICK = dict(base_steps=40, chat_steps=20, cp_steps=20, ft_steps=10, ft_examples=20, eval_tasks=24, batch=16, ratios=[0.5, 1.0])


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def trained(cache: Path, name: str, start: Path | None, data, steps: int, lr: float, chat: bool, seed: int) -> Path:
    """The model `name`, trained from `start` (None: random init) unless the cache has it."""
    from transformers import AutoModelForCausalLM

    path = cache / name
    if (path / "config.json").is_file():
        return path
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(start) if start else AutoModelForCausalLM.from_config(world.make_config())
    began = time.perf_counter()
    loss = world.train(model, data, steps, lr, log)
    log(f"trained {name}: {steps} steps in {time.perf_counter() - began:.0f} s, final loss {loss:.3f}")
    partial = path.with_name(path.name + ".partial")
    world.save(model, partial, chat)
    partial.rename(path)
    return path


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few training steps: checks the mechanics in under a minute")
    parser.add_argument("--out", default=str(ROOT / "reproduce" / "results"))
    parser.add_argument("--cache", default=str(ROOT / "reproduce" / "cache"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--b_share", type=float, default=0.1, help="share of language B in the base's pre-training text")
    args = parser.parse_args(argv)
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    from chatvector import add, extract

    logging.disable_progress_bar()
    settings = QUICK if args.quick else FULL
    began = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    variant = f"{'quick' if args.quick else 'full'}-seed{args.seed}" + (f"-b{args.b_share}" if args.b_share != 0.1 else "")
    cache = Path(args.cache) / variant
    cache.mkdir(parents=True, exist_ok=True)
    s, seed, batch = settings, args.seed, settings["batch"]

    def mixed(rng):  # pre-training text: A dominates, as English does
        return world.plain_text("a" if rng.random() < 1 - args.b_share else "b", rng), 0

    ft_rng = random.Random(seed + 4)
    ft_set = [world.chat_example("b", ft_rng) for _ in range(s["ft_examples"])]  # CP→FT's small instruction set in B
    base = trained(cache, "base", None, world.batches(mixed, s["base_steps"], batch, seed), s["base_steps"], 3e-3, False, seed)
    chat = trained(cache, "chat", base, world.batches(lambda r: world.chat_example("a", r), s["chat_steps"], batch, seed + 1),
                   s["chat_steps"], 1e-3, True, seed + 1)
    cp = trained(cache, "cp", base, world.batches(lambda r: (world.plain_text("b", r), 0), s["cp_steps"], batch, seed + 2),
                 s["cp_steps"], 1e-3, False, seed + 2)
    cp_ft = trained(cache, "cp_ft", cp, world.batches(lambda r: r.choice(ft_set), s["ft_steps"], batch, seed + 3), s["ft_steps"], 1e-3,
                    True, seed + 3)

    vector = cache / "chat_vector"
    if not (vector / "chat_vector.json").is_file():
        extract(str(base), str(chat), str(vector), device="cpu", overwrite=True)
    rows = [("base", base, None), ("chat", chat, None), ("CP", cp, None)]
    for ratio in s["ratios"]:
        merged = cache / f"cp+{ratio}cv"
        if not (merged / "config.json").is_file():
            add(str(cp), [str(vector)], str(merged), ratios=[ratio], device="cpu", overwrite=True)
        rows.append((f"CP + {ratio}·CV", merged, ratio))
    rows.append(("CP→FT", cp_ft, None))
    ft_cv = cache / "cp_ft+1.0cv"
    if not (ft_cv / "config.json").is_file():
        add(str(cp_ft), [str(vector)], str(ft_cv), ratios=[1.0], device="cpu", overwrite=True)
    rows.append(("CP→FT + CV", ft_cv, 1.0))

    tasks = world.held_out(s["eval_tasks"], seed + 99)
    table = []
    for name, path, ratio in rows:
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        in_b, in_a = world.evaluate(model, tasks, "b"), world.evaluate(model, tasks, "a")
        table.append({"model": name, "ratio": ratio, "success_B": in_b["success"], "replies_in_B": in_b["in_language"],
                      "ended_turn_B": in_b["ended_turn"], "success_A": in_a["success"]})
        log(f"evaluated {name}: {in_b}")
    result = {"quick": args.quick, "seed": seed, "b_share": args.b_share, "settings": settings, "eval_tasks": len(tasks),
              "parameters": sum(p.numel() for p in model.parameters()), "seconds": round(time.perf_counter() - began, 1),
              "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads(), "table": table}
    out = Path(args.out) / variant.replace("-seed0", "")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "results.md").write_text(markdown(result))
    plot(result, out / "reproduce.png")
    print(markdown(result))
    log(f"wrote {out}/results.json, results.md and reproduce.png in {result['seconds']} s")
    return result


def markdown(result: dict) -> str:
    lines = ["| model | task success (asked in B) | replies in B | ended turn | task success (asked in A) |", "|---|---:|---:|---:|---:|"]
    for row in result["table"]:
        lines.append(f"| {row['model']} | {row['success_B']:.1%} | {row['replies_in_B']:.1%} | {row['ended_turn_B']:.1%} | "
                     f"{row['success_A']:.1%} |")
    return "\n".join(lines) + f"\n\n{result['eval_tasks']} held-out tasks per language, greedy; {result['parameters']:,} parameters; " \
                              f"{result['seconds']} s on {result['threads']} threads, {result['date']}.\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    merged = [row for row in result["table"] if row["model"].startswith("CP + ")]
    cp = next(row for row in result["table"] if row["model"] == "CP")
    xs = [0.0, *[row["ratio"] for row in merged]]
    series = [cp, *merged]
    figure, axes = plt.subplots(figsize=(7, 4))
    for key, label, style in (("success_B", "task success (asked in B)", "o-"), ("replies_in_B", "replies in B", "s-"),
                              ("ended_turn_B", "ended turn", "^--")):
        axes.plot(xs, [row[key] for row in series], style, label=label)
    ft = next(row for row in result["table"] if row["model"] == "CP→FT")
    axes.axhline(ft["success_B"], color="grey", linestyle=":", label="CP→FT task success")
    axes.set_xlabel("ratio r in CP + r·CV (0 = CP alone)")
    axes.set_ylim(-0.03, 1.03)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    axes.set_title("synthetic languages: chat vector from A, CP in B", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
