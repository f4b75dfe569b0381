"""`python -m reproduce --quick`: the mechanics of the end-to-end reproduction (files, rows, ranges, determinism, the
fairness of its data, the sweep check's prompts), never an effect size."""
import json
import os
import random
import re
import struct
import subprocess
import sys

import pytest

from reproduce import ratio_check, world
from tests.conftest import ROOT

MODELS = ["base", "chat", "CP", "CP + 0.5·CV", "CP + 1.0·CV", "CP→FT", "CP→FT + CV"]
CHAT_TOKENS = {"<|user|>", "<|assistant|>", "<|end|>"}


def _run(out, cache, *flags):
    result = subprocess.run([sys.executable, "-m", "reproduce", "--quick", "--out", str(out), "--cache", str(cache), *flags], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return result


def test_the_quick_reproduction_writes_the_table_the_plot_the_models_and_the_sweep_check(tmp_path):
    result = _run(tmp_path / "out", tmp_path / "cache")
    out = tmp_path / "out" / "quick"
    data = json.loads((out / "results.json").read_text())
    assert [row["model"] for row in data["table"]] == MODELS
    for row in data["table"]:
        for key in ("success_B", "replies_in_B", "ended_turn_B", "success_A"):
            assert 0.0 <= row[key] <= 1.0 and round(row[key] * data["eval_tasks"]) == row[key] * data["eval_tasks"]
    table = (out / "results.md").read_text()
    assert table in result.stdout and all(f"| {name} |" in table for name in MODELS)
    png = (out / "reproduce.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (700, 400)
    cache = tmp_path / "cache" / "quick-seed0"
    kinds = {re.sub(r"-[0-9a-f]{10}", "", p.name) for p in cache.iterdir()}  # directories named by recipe hash
    assert kinds == {"base", "chat", "cp", "cp_ft", "chat_vector-chat", "cp+0.5cv-chat", "cp+1.0cv-chat", "cp_ft+1.0cv-chat",
                     "sweep-cp-chat_vector-chat"}
    assert json.loads(next(cache.glob("chat_vector-*/chat_vector.json")).read_text())  # made by the toolkit's own extract
    sweep = data["sweep"]
    assert [row["ratio"] for row in sweep["ratios"]] == [0.0, 0.5, 1.0]
    assert sweep["recommended"] in (None, 0.0, 0.5, 1.0) and sweep["ground_truth"] in (None, 0.0, 0.5, 1.0)
    assert sweep["agrees"] == (sweep["recommended"] == sweep["ground_truth"])
    summary = json.loads((out / "sweep" / "summary.json").read_text())  # written by sweep_ratios.py itself
    assert summary["recommended_ratio"] == sweep["recommended"] and summary["prompt_count"] == data["eval_tasks"]
    assert len((out / "heldout_b.jsonl").read_text().splitlines()) == data["eval_tasks"]


def test_fixed_seeds_give_the_same_table_from_scratch(tmp_path):
    tables = []
    for run in ("one", "two"):
        _run(tmp_path / run, tmp_path / f"cache-{run}")
        data = json.loads((tmp_path / run / "quick" / "results.json").read_text())
        tables.append((data["table"], data["sweep"]["ratios"]))
    assert tables[0] == tables[1]


@pytest.mark.parametrize("name", sorted(world.VARIANTS))
def test_no_variant_shows_the_chat_model_b_or_the_cp_chat_form(name):
    variant, rng = world.VARIANTS[name], random.Random(0)
    b_words = set(world.words("b")) - set(world.SHARED_MARKS)
    chat = [world.chat_example("a", rng)[0] for _ in range(300)]
    assert not any(set(tokens) & b_words for tokens in chat)
    cp = [world.plain_text(lang, rng, variant) for lang in "ab" for _ in range(300)]
    pretraining = [world.pretraining_text(rng, variant) for _ in range(300)]
    assert not any(set(tokens) & CHAT_TOKENS for tokens in cp + pretraining)
    assert all(token in world.ID for tokens in chat + cp + pretraining for token in tokens)


def test_evaluation_tasks_are_distinct_and_never_trained_on():
    tasks = world.held_out(300, 99)
    assert len(set(tasks)) == 300 and not any(world.trainable(task) for task in tasks)
    rng = random.Random(0)
    assert all(world.trainable(world._train_task(rng)) for _ in range(1000))


def test_the_sweep_prompts_pass_the_exact_answer_and_fail_wrong_ones():
    from chatvector.evaluation.instructions import InstructionChecker, Instruction
    from chatvector.evaluation.languages import LanguageDetector, matches

    tokenizer, detector = world.make_tokenizer(chat=True), LanguageDetector(ratio_check.LANGUAGE)
    tasks = [world.Task("reverse", (3, 10, 21)), world.Task("count", (1, 2, 3, 4)), world.Task("sort", (17, 0))]
    for task, row in zip(tasks, ratio_check.ifeval_rows(tasks)):
        checker = InstructionChecker([Instruction(i, k) for i, k in zip(row["instruction_id_list"], row["kwargs"])],
                                     ratio_check.LANGUAGE, row["prompt"])
        decode = lambda words: tokenizer.decode([world.ID[w] for w in words + ["<|end|>"]], skip_special_tokens=True).strip()
        right, wrong_order, in_a = decode(task.reply("b")), decode(task.reply("b")[::-1] + ["貓"]), decode(task.reply("a"))
        assert checker.check(right).loose == (True,) and checker.check(wrong_order).loose == (False,)
        assert checker.check(in_a).loose == (False,)
        assert matches(detector.detect(right)[0], ratio_check.LANGUAGE) and matches(detector.detect(row["prompt"])[0], ratio_check.LANGUAGE)


def test_the_ground_truth_pick_follows_the_sweeps_rule():
    rates = {0.0: (1.0, 0.0), 0.5: (0.95, 0.3), 0.75: (0.9, 0.3), 1.0: (0.85, 0.6)}
    assert ratio_check.picked(rates, 0.9) == 0.75  # 1.0 scores best but is out of the language; ties go to the larger
    assert ratio_check.picked(rates, 0.8) == 1.0
    assert ratio_check.picked(rates, 0.99) == 0.0
    assert ratio_check.picked({0.5: (0.5, 0.9)}, 0.9) is None
