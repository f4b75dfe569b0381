"""sweep_ratios.py: language labels, prompt sets, the recommendation rules, the engineered language switch end
to end, logits per ratio against add's checkpoints, resume after Ctrl-C, --write_best, and bad input.
Instruction following has its own tests (test_instructions.py), and so do safety and the judge."""
import json
import signal
import struct
import subprocess
import sys
import time

import pytest
import torch
from transformers import AutoModelForCausalLM

from chatvector import ChatVectorError, add
from chatvector.engines.hf import load_model
from chatvector.merge.in_memory import InMemoryMerge
from chatvector.cli.options import as_ratio_grid
from chatvector.engines.hf import generate_replies
from chatvector.engines.replies import conversation, has_loop
from chatvector.evaluation.languages import LanguageDetector, check_language, matches
from chatvector.evaluation.prompts import load_prompts
from chatvector.evaluation.report import recommend, summarize
from tests.conftest import ROOT, SCRIPT_ENV, load_weights, run_script
from tests.tiny_models import LEAN, make_switch_tokenizer

RATIOS = [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("text, label", [
    ("今天天氣很好，我們去公園散步，順便買一杯熱茶。", "zh-Hant"),
    ("今天天气很好，我们去公园散步，顺便买一杯热茶。", "zh-Hans"),
    ("오늘은 날씨가 좋아서 공원에 산책하러 갑니다.", "ko"),
    ("今日は天気がいいので、公園へ散歩に行きます。", "ja"),
    ("The weather is lovely today, so we are walking to the park.", "en"),
    ("我是人", "zh"),  # only characters both scripts share
    ("這裡們會说", "zh-Hant"),  # mixed: four Traditional-only characters against one Simplified-only
    ("", None),
    ("123 … !!", None),
])
def test_replies_are_labelled_by_language_and_chinese_script(text, label):
    assert LanguageDetector("zh-Hant").detect(text)[0] == label


def test_the_target_matches_its_script_and_plain_zh_counts_both():
    assert matches("zh-Hant", "zh-Hant") and not matches("zh-Hans", "zh-Hant") and matches("zh", "zh-Hant")
    assert matches("zh-Hans", "zh") and matches("zh-Hant", "zh") and not matches("ja", "zh") and not matches(None, "en")


def test_language_codes_are_checked_and_the_error_lists_the_supported_ones():
    assert check_language("zh-hant") == "zh-Hant" and check_language("FR") == "fr"
    with pytest.raises(ChatVectorError, match=r"unknown language code 'klingon'.*zh-Hans, zh-Hant"):
        check_language("klingon")


def _texts(spec: str, language: str) -> list[str]:
    return [p.text for p in load_prompts(spec, language)]


def test_prompt_files_txt_and_jsonl(tmp_path):
    (tmp_path / "p.txt").write_text("please write a poem\n\n  please write a story  \n")
    (tmp_path / "p.jsonl").write_text('{"prompt": "please write a poem", "id": 3}\n{"prompt": "please write a story"}\n')
    assert _texts(str(tmp_path / "p.txt"), "en") == _texts(str(tmp_path / "p.jsonl"), "en") == ["please write a poem", "please write a story"]
    assert [p.kind for p in load_prompts(str(tmp_path / "p.jsonl"), "en")] == ["plain", "plain"]
    (tmp_path / "bad.jsonl").write_text('{"text": "first"}\n')
    with pytest.raises(ChatVectorError, match="line 1 has no \"prompt\""):
        load_prompts(str(tmp_path / "bad.jsonl"), "en")
    with pytest.raises(ChatVectorError, match="no built-in prompt set for fr"):
        load_prompts("builtin", "fr")


def test_a_prompt_file_in_another_language_than_the_target_is_refused(tmp_path):
    (tmp_path / "ko.txt").write_text("오늘 저녁 메뉴를 추천해 주세요.\n주말에 갈 만한 곳을 알려 주세요.\n")
    with pytest.raises(ChatVectorError, match=r"ko.txt is written in ko \(2 of 2 prompts\), not in zh-Hant; .* --language ko"):
        load_prompts(str(tmp_path / "ko.txt"), "zh-Hant")


@pytest.mark.parametrize("ids, loop", [
    ([5] * 16, True), ([5] * 15, False), ([1, 2, 3] * 6, True), (list(range(40)), False),
    ([9, 8, *([1, 2, 3, 4, 5, 6, 7] * 3)], True), ([1, 2, 3, 4, 5, 6, 7] * 2 + [8], False),
])
def test_a_loop_is_a_tail_that_repeats(ids, loop):
    assert has_loop(ids) == loop


def _row(ratio, language, ended, loop=False, reply="x", tokens=3, seconds=0.5):
    return {"ratio": ratio, "language": language, "ended_turn": ended, "loop": loop, "reply": reply, "tokens": tokens, "seconds": seconds}


def test_without_instructions_the_recommendation_is_the_largest_ratio_in_language_whose_turn_taking_is_near_the_best():
    table = [
        {"ratio": 0.0, "target_language_rate": 1.0, "ended_turn_rate": 0.10},
        {"ratio": 0.25, "target_language_rate": 0.95, "ended_turn_rate": 0.80},
        {"ratio": 0.5, "target_language_rate": 0.92, "ended_turn_rate": 0.76},  # within 5 points of 0.80
        {"ratio": 0.75, "target_language_rate": 0.60, "ended_turn_rate": 0.99},  # best turn-taking, wrong language
    ]
    assert recommend(table, "zh-Hant", 0.9)[0] == 0.5
    table[2]["ended_turn_rate"] = 0.74  # now 6 points below the best qualifying ratio
    assert recommend(table, "zh-Hant", 0.9)[0] == 0.25
    ratio, reason = recommend(table, "zh-Hant", 0.99)
    assert ratio == 0.0 and "ratio 0.0" in reason
    ratio, reason = recommend(table, "ko", 1.01)
    assert ratio is None and reason.startswith("no ratio qualifies")


def _if_row(language, loose, strict=None, other_language=False):
    return {**_row(0.5, language, True), "kind": "instructions", "instructions": ["punctuation:no_comma"] * len(loose),
            "loose": loose, "strict": strict or loose, "other_language": other_language}


def test_with_instructions_the_recommendation_is_the_best_loose_accuracy_among_ratios_in_language_ties_to_the_larger():
    def entry(ratio, language, accuracy):
        return {"ratio": ratio, "target_language_rate": language, "ended_turn_rate": 1.0,
                "instructions": {"instruction_loose": {"rate": accuracy, "ci95": [0, 1]}}}

    table = [entry(0.25, 1.0, 0.40), entry(0.5, 0.97, 0.70), entry(0.6, 0.95, 0.70), entry(0.75, 0.92, 0.65), entry(1.0, 0.6, 0.9)]
    ratio, reason = recommend(table, "ko", 0.9)
    assert ratio == 0.6  # 0.5 and 0.6 tie on accuracy: the larger; 0.75 qualifies but follows fewer; 1.0 follows most, in English
    assert reason.startswith("ratio 0.6: the best instruction-level loose accuracy (70%) among the ratios with ≥ 90% replies in ko (it has 95%)")
    assert "larger ratios fall to 60% in ko (ratio 1.0) while following 90% of the instructions" in reason
    assert recommend(table, "ko", 0.96)[0] == 0.5 and recommend(table, "ko", 1.0)[0] == 0.25


def test_summary_rates_count_the_rows():
    rows = [_row(0.5, "zh-Hant", True), _row(0.5, "zh", False, loop=True, tokens=9), _row(0.5, "en", True),
            _row(0.5, None, False, reply="", tokens=0)]
    numbers = summarize(rows, 0.5, "zh-Hant")
    assert (numbers["target_language_rate"], numbers["ended_turn_rate"], numbers["loop_rate"], numbers["empty_rate"]) == (0.5, 0.5, 0.25, 0.25)
    assert numbers["mean_tokens"] == 3.75 and numbers["replies_per_s"] == 2.0 and numbers["replies"] == 4
    assert "instructions" not in numbers and "safety" not in numbers


def test_summary_gives_ifevals_four_figures_with_intervals_and_leaves_other_language_requests_out_of_the_language_rate():
    rows = [_if_row("ko", [True, True]), _if_row("ko", [True, False], strict=[False, False]), _if_row("en", [False]),
            _if_row("en", [True], strict=[False], other_language=True)]  # asked for English: not counted for the language rate
    numbers = summarize(rows, 0.5, "ko")["instructions"]
    assert numbers["prompt_loose"]["rate"] == 0.5 and numbers["prompt_strict"]["rate"] == 0.25
    assert numbers["instruction_loose"]["rate"] == round(4 / 6, 4) and numbers["instruction_strict"]["rate"] == round(2 / 6, 4)
    assert numbers["instruction_loose"]["n"] == 6
    assert numbers["kinds"]["punctuation:no_comma"] == {"n": 6, "strict": round(2 / 6, 4), "loose": round(4 / 6, 4)}
    low, high = numbers["instruction_loose"]["ci95"]
    assert 0.29 < low < 0.31 and 0.90 < high < 0.91  # Wilson's interval for 4 of 6
    assert summarize(rows, 0.5, "ko")["target_language_rate"] == round(2 / 3, 4)


def test_ratio_grids():
    assert as_ratio_grid([0, 0.5], 1) == as_ratio_grid([0, [0.5]], 1) == [[0.0], [0.5]] and as_ratio_grid(0.5, 1) == [[0.5]]
    assert as_ratio_grid([[0.5, 0.5], [1, 0.5]], 2) == [[0.5, 0.5], [1.0, 0.5]]
    assert as_ratio_grid(None, 1) == [[r] for r in RATIOS]
    for bad, count in (([0.5, 1], 2), ([[0.5]], 2), (["a"], 1), ([True], 1), ("[0,0.5", 1), (None, 2)):
        with pytest.raises(ChatVectorError, match="--ratios"):
            as_ratio_grid(bad, count)


# ---- the engineered language-switch model, end to end through the command line ----

def _expected_language(prompt: str, ratio: float, tokenizer) -> str | None:
    """By construction (tests/tiny_models.py) a reply is Chinese while ratio < 0.8 - mean lean of the prompt's tokens."""
    text = tokenizer.apply_chat_template(conversation(prompt, None), add_generation_prompt=True, tokenize=False)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text, add_special_tokens=False).input_ids)
    lean = sum(LEAN.get(t, 0.0) for t in tokens) / len(tokens)
    switch_at = 0.8 - lean
    return "zh-Hant" if ratio < switch_at - 0.02 else "en" if ratio > switch_at + 0.02 else None  # None: too close to call


@pytest.fixture(scope="module")
def swept(switch, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "s"
    result = run_script("sweep_ratios.py", switch["cp"], f"['{switch['cv']}']", "--ratios", json.dumps(RATIOS), "--language", "zh-Hant",
                        "--out", out, "--max_new_tokens", 48, "--batch_size", 16)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "replies.jsonl").read_text().splitlines()]
    return out, result, rows


def test_the_sweep_reports_the_language_switch_at_the_ratio_the_model_was_built_with(swept):
    out, result, rows = swept
    summary = json.loads((out / "summary.json").read_text())
    by_ratio = {row["ratio"]: row for row in summary["ratios"]}
    assert [by_ratio[r]["target_language_rate"] for r in (0.0, 0.25, 1.0)] == [1.0, 1.0, 0.0]
    assert [by_ratio[r]["ended_turn_rate"] for r in RATIOS] == [0.0, 0.0, 1.0, 1.0, 1.0]  # the turn ends once ratio > 0.4
    assert [by_ratio[r]["loop_rate"] for r in RATIOS] == [1.0, 1.0, 0.0, 0.0, 0.0]  # the CP rambles the sentence again
    assert summary["language"] == "zh-Hant" and summary["prompt_count"] == len(load_prompts("builtin", "zh-Hant"))
    tokenizer = make_switch_tokenizer()
    called = 0
    for row in rows:
        expected = _expected_language(row["prompt"], row["ratio"], tokenizer)
        if expected:
            called += 1
            assert row["language"] == expected, row
    assert called > 0.9 * len(rows)
    assert f"recommended: ratio {summary['recommended_ratio']}" in result.stdout


def test_every_ratio_prompt_pair_has_one_row_with_every_field(swept):
    out, _, rows = swept
    prompts = {p.key: p for p in load_prompts("builtin", "zh-Hant")}
    assert sorted((r["ratio"], r["prompt_id"]) for r in rows) == sorted((ratio, key) for ratio in RATIOS for key in prompts)
    for row in rows:
        assert row["prompt"] == prompts[row["prompt_id"]].text and row["kind"] == "instructions"
        assert {"reply", "language", "confidence", "tokens", "ended_turn", "instructions", "strict", "loose"} <= set(row)
        assert row["instructions"] == [i.id for i in prompts[row["prompt_id"]].instructions] and len(row["loose"]) == len(row["instructions"])
        assert row["reply"] in ("我們會幫你處理這件事。", "sure, i will help you with that.") or not row["ended_turn"]
        assert row["tokens"] == (11 if row["language"] == "zh-Hant" else 9) if row["ended_turn"] else row["tokens"] == 48


def test_summary_numbers_recompute_from_the_replies(swept):
    out, _, rows = swept
    summary = json.loads((out / "summary.json").read_text())
    for entry in summary["ratios"]:
        mine = [r for r in rows if r["ratio"] == entry["ratio"]]
        counted = [r for r in mine if not r["other_language"]]
        share = lambda test, among=mine: round(sum(map(test, among)) / len(among), 4)  # noqa: E731
        assert entry["target_language_rate"] == share(lambda r: r["language"] == "zh-Hant", counted)
        assert entry["ended_turn_rate"] == share(lambda r: r["ended_turn"])
        assert entry["loop_rate"] == share(lambda r: r["loop"])
        assert entry["empty_rate"] == share(lambda r: r["reply"] == "")
        assert entry["mean_tokens"] == round(sum(r["tokens"] for r in mine) / len(mine), 2)
        assert entry["replies_per_s"] == pytest.approx(len(mine) / sum(r["seconds"] for r in mine), rel=1e-3)
        followed = [f for r in mine for f in r["loose"]]
        assert entry["instructions"]["instruction_loose"]["rate"] == round(sum(followed) / len(followed), 4)
        assert entry["instructions"]["prompt_strict"]["rate"] == share(lambda r: all(r["strict"]))
    table = (out / "summary.md").read_text()
    assert all(f"| {entry['ratio']}" in table for entry in summary["ratios"]) and "| punctuation:no_comma |" in table
    best = max((e for e in summary["ratios"] if e["target_language_rate"] >= 0.9),
               key=lambda e: (e["instructions"]["instruction_loose"]["rate"], e["ratio"]))
    assert summary["recommended_ratio"] == best["ratio"]


def test_the_plot_is_a_png_of_the_expected_size(swept):
    data = (swept[0] / "sweep.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (700, 400)
    assert not [p.name for p in swept[0].iterdir() if p.name.startswith(".")]  # no partial files left


# ---- weights per ratio ----

@pytest.mark.parametrize("arch, token_map", [("llama", {}), ("qwen2", {}), ("llama", {6: 6})])
def test_each_ratio_gives_the_logits_of_adds_checkpoint_whatever_ratio_came_before(arch, token_map, trios, vectors, tmp_path):
    cp, vector = str(trios[arch]["cp"]), str(vectors[arch])
    model, tokenizer, model_dir = load_model(cp, "cpu", "auto", need_template=False)
    ids = torch.tensor([[1, 3, 20, 34, 50, 6, 4]])
    with InMemoryMerge(model, model_dir, [vector], False, token_map) as merge:
        merge.check(1)
        for ratio in (1.0, 0.3, -0.5, 0.3, 0.0):
            merge.apply([ratio])
            if ratio == 0:  # the CP itself (add refuses a special-token map at ratio 0)
                written = AutoModelForCausalLM.from_pretrained(cp).eval()
            else:
                out = add(cp, [vector], str(tmp_path / f"r{ratio}"), ratios=[ratio], special_tokens_map=token_map, device="cpu",
                          overwrite=True)
                written = AutoModelForCausalLM.from_pretrained(out).eval()
            with torch.no_grad():
                assert torch.equal(model(ids).logits, written(ids).logits), ratio


def test_batched_replies_equal_one_by_one_and_any_eos_id_ends_a_turn(switch):
    model, tokenizer, model_dir = load_model(str(switch["cp"]), "cpu", "auto", need_template=False)
    tokenizer.chat_template = make_switch_tokenizer().chat_template
    prompts = [conversation(p, None) for p in _texts("builtin", "zh-Hant")]  # at 0.6 some switch to English, some not
    with InMemoryMerge(model, model_dir, [str(switch["cv"])], False, {}) as merge:
        merge.apply([0.6])
        batched = generate_replies(model, tokenizer, prompts, 20, [6, 2], {"do_sample": False})
        alone = [generate_replies(model, tokenizer, [p], 20, [6, 2], {"do_sample": False})[0] for p in prompts]
        assert batched == alone and {r.text for r in batched} == {"我們會幫你處理這件事。", "sure, i will help you with that."}
        assert all(r.ended_turn for r in batched)
        assert not any(r.ended_turn for r in generate_replies(model, tokenizer, prompts, 20, [2], {"do_sample": False}))


# ---- resume, Ctrl-C, --write_best ----

def _sweep_args(switch, out, *extra):
    return [sys.executable, str(ROOT / "sweep_ratios.py"), str(switch["cp"]), f"['{switch['cv']}']", "--language", "zh-Hant",
            "--out", str(out), "--max_new_tokens", "48", *map(str, extra)]


def test_ctrl_c_keeps_finished_rows_and_a_rerun_generates_only_the_missing_ones(switch, tmp_path):
    out = tmp_path / "s"
    log = out / "replies.jsonl"
    process = subprocess.Popen(_sweep_args(switch, out, "--batch_size", 1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=SCRIPT_ENV,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # as a background job starts
    deadline = time.time() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 10):
        assert time.time() < deadline and process.poll() is None, process.stderr.read() if process.poll() is not None else ""
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    kept = log.read_text().splitlines()
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == f"error: interrupted; {len(kept)} replies are kept in {log}; run the same command again to resume"
    assert all(json.loads(line) for line in kept) and not (out / "summary.json").exists()
    total = len(RATIOS) * len(_texts("builtin", "zh-Hant"))
    assert len(kept) < total

    with open(log, "a") as file:  # a kill -9 in the middle of a write leaves a cut line
        file.write('{"ratio": 0.5, "prompt_id"')
    result = subprocess.run(_sweep_args(switch, out, "--batch_size", 16), capture_output=True, text=True, env=SCRIPT_ENV)
    assert result.returncode == 0, result.stderr
    assert f"({total - len(kept)} replies generated, {len(kept)} resumed;" in result.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == total and len({(r["ratio"], r["prompt_id"]) for r in rows}) == total
    assert json.loads((out / "summary.json").read_text())["recommended_ratio"] == 0.5

    again = run_script("sweep_ratios.py", *_sweep_args(switch, out)[2:])
    assert again.returncode == 0 and "(0 replies generated" in again.stderr
    other = run_script("sweep_ratios.py", *_sweep_args(switch, out)[2:-2], "--max_new_tokens", 30, "--ratios", "[0.5]")
    assert other.returncode == 0 and f"({total // len(RATIOS)} replies generated, 0 resumed" in other.stderr  # other settings: not reused
    assert f"{total} replies in" in other.stderr and "not reused" in other.stderr


def test_write_best_writes_adds_checkpoint_for_the_recommended_ratio_with_the_tables_in_its_card(switch, tmp_path):
    result = run_script("sweep_ratios.py", *_sweep_args(switch, tmp_path / "s")[2:], "--ratios", "[0.25,0.5,0.9]", "--write_best", tmp_path / "best")
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    ratio = summary["recommended_ratio"]
    assert ratio in (0.25, 0.5)  # 0.9 answers in English
    reference = add(str(switch["cp"]), [str(switch["cv"])], str(tmp_path / "ref"), ratios=[ratio], device="cpu")
    best, expected = load_weights(tmp_path / "best"), load_weights(reference)
    assert best.keys() == expected.keys() and all(torch.equal(best[k], expected[k]) for k in best)
    card = (tmp_path / "best" / "README.md").read_text()
    assert "## Ratio sweep" in card and f"| {ratio} ← |" in card and summary["reason"] in card and "| punctuation:no_comma |" in card
    AutoModelForCausalLM.from_pretrained(tmp_path / "best")  # loads as is


def test_write_best_with_no_qualifying_ratio_writes_nothing(switch, tmp_path):
    result = run_script("sweep_ratios.py", *_sweep_args(switch, tmp_path / "s")[2:], "--ratios", "[0.9,1]", "--write_best", tmp_path / "best")
    assert result.returncode == 1 and "no recommendation: no ratio qualifies" in result.stdout
    assert result.stderr.strip().splitlines()[-1].startswith("error: no ratio qualified, so nothing was written to")
    assert not (tmp_path / "best").exists() and (tmp_path / "s" / "summary.json").is_file()


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """A language-switch trio from other random weights: its CP does not descend from `switch`'s base."""
    from tests.tiny_models import build_language_switch

    return build_language_switch(tmp_path_factory.mktemp("stranger"), seed=7)


@pytest.mark.parametrize("case", ["language", "empty prompts", "missing prompts", "ratios syntax", "ratios length", "ratios comma",
                                  "lineage", "write_best exists", "batch size"])
def test_bad_input_is_one_error_line_and_nothing_is_written(case, switch, stranger, tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cp, cv, out = switch["cp"], f"['{switch['cv']}']", tmp_path / "s"
    args, message = {
        "language": ([cp, cv, "--language", "zh-TW"], "unknown language code 'zh-TW'; use one of af,"),
        "empty prompts": ([cp, cv, "--language", "en", "--prompts", tmp_path / "empty.txt"], "has no prompts"),
        "missing prompts": ([cp, cv, "--language", "en", "--prompts", tmp_path / "nope.txt"], "does not exist"),
        "ratios syntax": ([cp, cv, "--language", "en", "--ratios", "[0,0.5"], "--ratios is not a well-formed list"),
        "ratios length": ([cp, f"['{switch['cv']}','{switch['cv']}']", "--language", "en", "--ratios", "[[0.5],[1]]"], "lists of 2 numbers"),
        "ratios comma": ([cp, cv, "--language", "en", "--ratios", "0,5"], "is ambiguous"),
        "lineage": ([stranger["cp"], cv, "--language", "en"], "does not descend"),
        "write_best exists": ([cp, cv, "--language", "en", "--write_best", tmp_path / "full"], "exists and is not empty"),
        "batch size": ([cp, cv, "--language", "en", "--batch_size", "0"], "--batch_size must be a whole number ≥ 1"),
    }[case]
    result = run_script("sweep_ratios.py", *args, "--out", out)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and lines[-1].startswith("error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr and not out.exists() and (tmp_path / "full" / "x").is_file()
