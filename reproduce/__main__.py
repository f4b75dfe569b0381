"""`make reproduce`: the paper's effect at laptop scale, with the toolkit's own extract, add and sweep.

    python -m reproduce [--variant NAME] [--quick] [--out reproduce/results] [--cache reproduce/cache]

Trains tiny Llama models on CPU with fixed seeds (cached by recipe, so reruns only evaluate):
  base     pre-trained on plain text, mostly in language A (English words), some in B (Traditional Chinese words);
           the variant adds aligned pairs, code-switched statements or shared marks
  chat     base tuned on chat-template instructions in A only
  CP       base continually pre-trained on plain text in B (and, by variant, some A); never chat form
  CP→FT    CP tuned on a small instruction set in B (the paper's stronger baseline)
then builds CP + r·CV (CV = chat − base) with chatvector's extract and add, and measures, on held-out
instructions asked in B: task success, replies in B, and end-of-turn rate (the paper's Tables 1 and 7).
Last, sweep_ratios.py judges the same ratios from an IFEval-format file of the held-out tasks, and its
recommendation is checked against the ratio the measured task success picks.
"""
import argparse
import hashlib
import json
import random
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reproduce import ratio_check, report, world  # noqa: E402

FULL = dict(base_steps=2400, chat_steps=600, cp_steps=1200, ft_steps=300, ft_examples=200, eval_tasks=300, batch=64,
            ratios=[0.25, 0.5, 0.75, 1.0, 1.25])
QUICK = dict(base_steps=40, chat_steps=20, cp_steps=20, ft_steps=10, ft_examples=20, eval_tasks=24, batch=16, ratios=[0.5, 1.0])
PRETRAINING = ("aligned", "switched", "shared_marks", "b_share")  # the Variant fields the base depends on


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def trained(cache: Path, name: str, recipe: dict, start: Path | None, data, steps: int, lr: float, chat: bool, seed: int) -> Path:
    """The model `recipe` makes, trained from `start` (None: random init) unless the cache has it. The directory is
    named by the recipe, so variants that share a model's recipe share its training."""
    from transformers import AutoModelForCausalLM

    path = cache / f"{name}-{hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]}"
    if (path / "config.json").is_file():
        return path
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(start) if start else AutoModelForCausalLM.from_config(world.make_config())
    began = time.perf_counter()
    loss = world.train(model, data, steps, lr, log)
    log(f"trained {path.name}: {steps} steps in {time.perf_counter() - began:.0f} s, final loss {loss:.3f}")
    partial = path.with_name(path.name + ".partial")
    world.save(model, partial, chat)
    (partial / "recipe.json").write_text(json.dumps(recipe, indent=1) + "\n")
    partial.rename(path)
    return path


def train_models(cache: Path, variant: world.Variant, s: dict, seed: int) -> dict[str, Path]:
    """base, chat, CP and CP→FT, each trained unless its recipe is cached."""
    batch, v = s["batch"], variant
    base_recipe = {"base": {k: getattr(v, k) for k in PRETRAINING}, "steps": s["base_steps"], "batch": batch, "seed": seed,
                   "threads": torch.get_num_threads()}  # the thread count changes the rounding, and here the outcome
    chat_recipe = {**base_recipe, "chat": s["chat_steps"]}
    cp_recipe = {**base_recipe, "cp": s["cp_steps"], "cp_keeps_a": v.cp_keeps_a}
    ft_recipe = {**cp_recipe, "ft": s["ft_steps"], "ft_examples": s["ft_examples"]}
    ft_rng = random.Random(seed + 4)
    ft_set = [world.chat_example("b", ft_rng) for _ in range(s["ft_examples"])]  # CP→FT's small instruction set in B

    def cp_text(rng):  # the CP's continued pre-training: B, keeping some A as real CP data does; never chat form
        return world.plain_text("a" if rng.random() < v.cp_keeps_a else "b", rng, v), 0

    base = trained(cache, "base", base_recipe, None,
                   world.batches(lambda r: (world.pretraining_text(r, v), 0), s["base_steps"], batch, seed), s["base_steps"], 3e-3,
                   False, seed)
    chat = trained(cache, "chat", chat_recipe, base,
                   world.batches(lambda r: world.chat_example("a", r), s["chat_steps"], batch, seed + 1), s["chat_steps"], 1e-3, True,
                   seed + 1)
    cp = trained(cache, "cp", cp_recipe, base, world.batches(cp_text, s["cp_steps"], batch, seed + 2), s["cp_steps"],
                 1e-3, False, seed + 2)
    cp_ft = trained(cache, "cp_ft", ft_recipe, cp, world.batches(lambda r: r.choice(ft_set), s["ft_steps"], batch, seed + 3),
                    s["ft_steps"], 1e-3, True, seed + 3)
    return {"base": base, "chat": chat, "cp": cp, "cp_ft": cp_ft}


def merged_models(models: dict[str, Path], ratios: list[float]) -> tuple[Path, list[tuple[str, Path, float | None]]]:
    """The chat vector (extract) and the rows to evaluate, CP + r·CV written by add."""
    from chatvector import add, extract

    vector = models["chat"].with_name(f"chat_vector-{models['chat'].name}")
    if not (vector / "chat_vector.json").is_file():
        extract(str(models["base"]), str(models["chat"]), str(vector), device="cpu", overwrite=True)
    rows = [("base", models["base"], None), ("chat", models["chat"], None), ("CP", models["cp"], 0.0)]
    for ratio in ratios:
        rows.append((f"CP + {ratio}·CV", _added(models["cp"], vector, ratio, add), ratio))
    rows.append(("CP→FT", models["cp_ft"], None))
    rows.append(("CP→FT + CV", _added(models["cp_ft"], vector, 1.0, add), None))
    return vector, rows


def _added(model: Path, vector: Path, ratio: float, add) -> Path:
    merged = model.with_name(f"{model.name}+{ratio}cv-{vector.name.removeprefix('chat_vector-')}")
    if not (merged / "config.json").is_file():
        add(str(model), [str(vector)], str(merged), ratios=[ratio], device="cpu", overwrite=True)
    return merged


def evaluate_rows(rows, tasks: list[world.Task]) -> list[dict]:
    from transformers import AutoModelForCausalLM

    table = []
    for name, path, ratio in rows:
        model = AutoModelForCausalLM.from_pretrained(path).eval()
        in_b, in_a = world.evaluate(model, tasks, "b"), world.evaluate(model, tasks, "a")
        table.append({"model": name, "ratio": ratio, "success_B": in_b["success"], "replies_in_B": in_b["in_language"],
                      "ended_turn_B": in_b["ended_turn"], "success_A": in_a["success"]})
        log(f"evaluated {name}: success {in_b['success']:.1%} in B, {in_a['success']:.1%} in A; replies in B "
            f"{in_b['in_language']:.1%}, ended {in_b['ended_turn']:.1%}; e.g. {' | '.join(in_b['replies'][:3])}")
    return table


def _parameters(model: Path) -> int:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model).num_parameters()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default=world.DEFAULT, choices=sorted(world.VARIANTS),
                        help=f"what the pre-training text and the models are (default {world.DEFAULT}); see reproduce/world.py")
    parser.add_argument("--quick", action="store_true", help="a few training steps: checks the mechanics in under a minute")
    parser.add_argument("--out", default=str(ROOT / "reproduce" / "results"))
    parser.add_argument("--cache", default=str(ROOT / "reproduce" / "cache"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from transformers.utils import logging

    logging.disable_progress_bar()
    settings, variant = QUICK if args.quick else FULL, world.VARIANTS[args.variant]
    began = time.perf_counter()
    torch.set_num_threads(1)  # the training's rounding, and at this scale its outcome, must not depend on the core count
    mode = "quick" if args.quick else "full"
    cache = Path(args.cache) / f"{mode}-seed{args.seed}"
    cache.mkdir(parents=True, exist_ok=True)
    models = train_models(cache, variant, settings, args.seed)
    vector, rows = merged_models(models, settings["ratios"])
    tasks = world.held_out(settings["eval_tasks"], args.seed + 99)
    table = evaluate_rows(rows, tasks)
    out = Path(args.out) / "-".join([mode, *([variant.name] if variant.name != world.DEFAULT else []),
                                     *([f"seed{args.seed}"] if args.seed else [])])
    out.mkdir(parents=True, exist_ok=True)
    sweep = ratio_check.run(models["cp"], vector, tasks, [0.0, *settings["ratios"]], table, out, log)
    result = {"quick": args.quick, "variant": asdict(variant), "seed": args.seed, "settings": settings, "eval_tasks": len(tasks),
              "parameters": _parameters(models["base"]),
              "seconds": round(time.perf_counter() - began, 1), "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
              "threads": torch.get_num_threads(), "table": table, "sweep": sweep}
    report.write(result, out)
    print(report.markdown(result))
    log(f"wrote {out}/results.json, results.md and reproduce.png in {result['seconds']} s")
    return result


if __name__ == "__main__":
    main()
