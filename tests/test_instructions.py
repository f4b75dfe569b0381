"""Instruction following: lm-eval's IFEval checkers with our CJK adaptations, the built-in verifiable prompt sets, IFEval's
own file format, offline use, and the engineered instruction switch end to end (IF rises with the ratio, the language falls)."""
import json
import os
import subprocess
import sys

import pytest

from chatvector.engines.replies import conversation
from chatvector.evaluation.instructions import Instruction, InstructionChecker, count_sentences, count_words, response_variants
from chatvector.evaluation.languages import LanguageDetector
from chatvector.evaluation.prompts import load_prompts
from tests.conftest import ROOT, run_script
from tests.tiny_models import COMMA_FROM, INSTRUCTION_SWITCH, LEAN, build_instruction_switch, make_switch_tokenizer

LANGUAGES = ["zh-Hant", "zh-Hans", "ko", "ja", "en"]
CASES = [(lang, i, json.loads(line)) for lang in LANGUAGES
         for i, line in enumerate((ROOT / "tests" / "data" / "ifeval_cases" / f"{lang}.jsonl").read_text().splitlines())]
REQUIRED = ["keywords:existence", "keywords:forbidden_words", "detectable_format:number_bullet_lists", "detectable_format:multiple_sections",
            "length_constraints:number_paragraphs", "detectable_format:json_format", "detectable_format:title",
            "detectable_content:postscript", "startend:end_checker", "punctuation:no_comma", "length_constraints:number_words",
            "length_constraints:number_sentences", "detectable_content:number_placeholders", "language:response_language"]


@pytest.mark.parametrize("language, index, case", CASES, ids=[f"{lang}-{i}-{c['instruction_id']}" for lang, i, c in CASES])
def test_each_checker_judges_hand_written_replies_as_a_native_reader_would(language, index, case):
    """Compliant and non-compliant replies written for this project, per language and instruction kind (strict reading)."""
    checker = InstructionChecker([Instruction(case["instruction_id"], case["kwargs"])], language, case.get("prompt", ""))
    assert checker.check(case["reply"]).strict == (case["follows"],), case["why"]


def test_the_cases_cover_every_instruction_of_every_set_both_ways():
    for language in LANGUAGES:
        used = {i.id for p in load_prompts("builtin", language) for i in p.instructions}
        cases = {(c["instruction_id"], c["follows"]) for lang, _, c in CASES if lang == language}
        assert all((kind, True) in cases and (kind, False) in cases for kind in used), language


@pytest.mark.parametrize("language", LANGUAGES)
def test_each_builtin_set_has_40_prompts_80_instructions_every_kind_and_its_language(language):
    prompts = load_prompts("builtin", language)
    kinds = [i.id for p in prompts for i in p.instructions]
    assert len(prompts) >= 40 and len(kinds) >= 80 and len({p.text for p in prompts}) == len(prompts)
    assert set(REQUIRED) <= set(kinds) and (language != "en" or "change_case:english_lowercase" in kinds)
    detector = LanguageDetector(language)
    assert [detector.detect(p.text)[0] for p in prompts] == [language] * len(prompts)


@pytest.mark.parametrize("text, language, words", [
    ("我們會幫你處理這件事。", "zh-Hant", 10), ("iPhone 15 Pro 很好用", "zh-Hant", 6), ("東京の天気は晴れです", "ja", 10),
    ("오늘은 날씨가 좋아요", "ko", 3), ("Hello, big world!", "en", 3), ("ＡＢＣ１２３", "zh-Hans", 1),
])
def test_words_are_characters_in_chinese_and_japanese_and_spaced_words_elsewhere(text, language, words):
    assert count_words(text, language) == words


@pytest.mark.parametrize("text, sentences", [
    ("一句。兩句！三句？", 3), ("One. Two! Three?", 3), ("He said \"stop.\" Then left.", 2), ("Pi is 3.14 today.", 1),
    ("* item one\n* item two", 1), ("了解。\"", 1), ("", 0),
])
def test_sentences_end_at_western_and_cjk_stops_and_a_closing_quote_is_no_sentence(text, sentences):
    assert count_sentences(text) == sentences


def test_the_loose_reading_is_ifevals_eight_variants():
    variants = response_variants("Sure!\n**Body** text\nBye")
    assert variants == ["Sure!\n**Body** text\nBye", "Sure!\nBody text\nBye", "**Body** text\nBye", "Sure!\n**Body** text", "**Body** text",
                        "Body text\nBye", "Sure!\nBody text", "Body text"]
    checker = InstructionChecker([Instruction("startend:end_checker", {"end_phrase": "text"})], "en")
    assert checker.check("Sure!\n**Body** text\nBye") == checker.check("Sure!\n**Body** text\nBye")
    verdict = checker.check("Sure!\n**Body** text\nBye")
    assert verdict.strict == (False,) and verdict.loose == (True,)  # the last line dropped, then it ends with "text"


def test_ifevals_own_rows_are_read_with_its_empty_arguments(tmp_path):
    """google/IFEval's rows list every argument name, null where unused; those are dropped as IFEval's harness does."""
    nulls = {"num_highlights": None, "relation": None, "num_words": None, "language": None, "keywords": None}
    rows = [{"key": 1000, "prompt": "Write a 300+ word summary of the history of tea. Do not use any commas.",
             "instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
             "kwargs": [dict(nulls), {**nulls, "relation": "at least", "num_words": 300}]},
            {"key": 1001, "prompt": "Answer in Korean: what is the capital of France?", "instruction_id_list": ["language:response_language"],
             "kwargs": [{**nulls, "language": "ko"}]}]
    (tmp_path / "ifeval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts = load_prompts(str(tmp_path / "ifeval.jsonl"), "en")
    assert [p.key for p in prompts] == ["1000", "1001"] and [p.kind for p in prompts] == ["instructions"] * 2
    assert prompts[1].asks_for_another_language("en") and not prompts[0].asks_for_another_language("en")
    words = InstructionChecker(list(prompts[0].instructions), "en")
    assert words.check("tea " * 300).strict == (True, True) and words.check("tea, " * 300).strict == (False, True)
    assert InstructionChecker(list(prompts[1].instructions), "en").check("프랑스의 수도는 파리입니다.").strict == (True,)


@pytest.mark.parametrize("row, message", [
    ({"instruction_id_list": ["punctuation:no_semicolons"], "kwargs": [{}]}, "unknown instruction id 'punctuation:no_semicolons'"),
    ({"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 50, "relation": "about"}]}, "malformed kwargs"),
    ({"instruction_id_list": ["startend:end_checker"], "kwargs": [{"end_phrase": "Bye.", "colour": "red"}]}, "malformed kwargs"),
    ({"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"relation": "less than"}]}, "needs kwargs ['num_words']"),
    ({"instruction_id_list": ["punctuation:no_comma"], "kwargs": []}, "must be lists of equal length"),
    ({"instruction_id_list": "punctuation:no_comma", "kwargs": [{}]}, "must be lists of equal length"),
])
def test_bad_instructions_in_a_users_file_are_one_error_before_the_model_loads(row, message, switch, tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"key": 1, "prompt": "請幫我寫一封信給房東。", **row}, ensure_ascii=False) + "\n")
    result = run_script("sweep_ratios.py", switch["cp"], switch["cv"], "--language", "zh-Hant", "--prompts", tmp_path / "p.jsonl",
                        "--out", tmp_path / "s")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and "line 1" in lines[0] and message in lines[0], \
        result.stderr
    assert not (tmp_path / "s").exists()


NETWORK_CUT = """
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args)[:80])
    raise OSError("network cut by the test")
socket.socket.connect = socket.socket.connect_ex = refuse
socket.getaddrinfo = socket.create_connection = refuse
from chatvector.evaluation.instructions import InstructionChecker
from chatvector.evaluation.prompts import load_prompts
verdicts = 0
for language in ("zh-Hant", "zh-Hans", "ko", "ja", "en"):
    for prompt in load_prompts("builtin", language):
        checker = InstructionChecker(list(prompt.instructions), language, prompt.text)
        verdicts += len(checker.check("Sure. Here it is, in two sentences!\\nP.S. Bye").loose)
print(json.dumps({"attempts": attempts, "verdicts": verdicts}))
"""


def test_every_checker_runs_with_the_network_cut():
    """lm-eval's checker module asks nltk to download punkt_tab on import: here nothing may even try."""
    result = subprocess.run([sys.executable, "-c", NETWORK_CUT], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["attempts"] == [] and found["verdicts"] == sum(len(p.instructions) for lang in LANGUAGES for p in load_prompts("builtin", lang))


# ---- the engineered instruction switch, end to end through the command line ----

def _switch_point(text: str, tokenizer) -> float:
    """By construction (tests/tiny_models.py) a reply is English once ratio > 0.8 - mean lean of the prompt's tokens."""
    rendered = tokenizer.apply_chat_template(conversation(text, None), add_generation_prompt=True, tokenize=False)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(rendered, add_special_tokens=False).input_ids)
    return 0.8 - sum(LEAN.get(t, 0.0) for t in tokens) / len(tokens)


@pytest.fixture(scope="module")
def instruction_switch(tmp_path_factory):
    """The model, its vector, and a "no commas" set of long prompts (English from about 0.6) and short ones (from about 0.75)."""
    from chatvector import extract

    root = tmp_path_factory.mktemp("instruction_switch")
    paths = build_instruction_switch(root)
    paths["cv"] = extract(str(paths["base"]), str(paths["chat"]), str(root / "cv"))
    return paths


SWITCH_RATIOS = [0.0, 0.35, 0.5, 0.55, 0.7, 0.9]  # none within 0.02 of a prompt's switch point or of 3/7


@pytest.mark.parametrize("min_language_rate", [0.9, 0.5])
def test_instruction_following_rises_with_the_ratio_as_the_language_falls_and_the_rule_picks_the_crossing(min_language_rate,
                                                                                                         instruction_switch, tmp_path):
    paths = instruction_switch
    result = run_script("sweep_ratios.py", paths["cp"], paths["cv"], "--language", "zh-Hant", "--prompts", paths["prompts"],
                        "--ratios", json.dumps(SWITCH_RATIOS), "--max_new_tokens", 40, "--batch_size", 16,
                        "--min_language_rate", min_language_rate, "--out", tmp_path / "s")
    assert result.returncode == 0, result.stderr
    tokenizer = make_switch_tokenizer(design=INSTRUCTION_SWITCH)
    switch_points = [_switch_point(p.text, tokenizer) for p in load_prompts(str(paths["prompts"]), "zh-Hant")]
    expected = []
    for ratio in SWITCH_RATIOS:
        assert all(abs(ratio - point) > 0.02 for point in switch_points) and abs(ratio - COMMA_FROM) > 0.02  # every prompt can be called
        language = sum(ratio < point for point in switch_points) / len(switch_points)  # Chinese below the switch point
        followed = 1.0 if ratio > COMMA_FROM else 0.0  # the comma goes at 3/7, in Chinese and in English alike
        expected.append((ratio, round(language, 4), followed))
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    found = [(r["ratio"], r["target_language_rate"], r["instructions"]["instruction_loose"]["rate"]) for r in summary["ratios"]]
    assert found == expected
    languages, follows = [e[1] for e in expected], [e[2] for e in expected]
    assert follows == sorted(follows) and follows[0] == 0 and follows[-1] == 1  # instruction following rises ...
    assert languages == sorted(languages, reverse=True) and 0 < languages[-2] < 1 and languages[-1] == 0  # ... as the language falls
    crossing = max((e for e in expected if e[1] >= min_language_rate), key=lambda e: (e[2], e[0]))[0]
    assert summary["recommended_ratio"] == crossing == {0.9: 0.55, 0.5: 0.7}[min_language_rate]
    assert f"recommended: ratio {crossing}: the best instruction-level loose accuracy (100%)" in result.stdout
