"""The sweep on vLLM (`make test-vllm` runs these in their own venv with vllm-cpu; elsewhere they are skipped).

The engine starts once on the CP and swaps each ratio's weights in place: its greedy replies equal a fresh vLLM engine's
on add's checkpoint at that ratio and transformers' on the same checkpoint, at tensor parallel 1 and 2; the sweep's rows
equal the transformers engine's; a failed start is one error line naming the option; Ctrl-C during a swap or during
generation, and a SIGKILL followed by a rerun, leave no vLLM process behind."""
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatvector import add, extract
from chatvector.engines.hf import generate_replies, load_chat_model
from chatvector.engines.replies import conversation
from chatvector.evaluation.prompts import load_prompts
from tests.conftest import ROOT, SCRIPT_ENV
from tests.tiny_models import build_instruction_switch

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs vLLM: make test-vllm")
PROBE = str(ROOT / "tests" / "vllm_probe.py")
ENV = {**SCRIPT_ENV, "VLLM_CPU_KVCACHE_SPACE": "1"}
RATIOS = [0.5, 1.0, 0.0]  # back to 0 last: the CP's own weights restored


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm")
    paths = build_instruction_switch(root / "switch")
    paths["cv"] = extract(str(paths["base"]), str(paths["chat"]), str(root / "cv"))
    for ratio in RATIOS[:2]:
        paths[ratio] = add(str(paths["cp"]), [str(paths["cv"])], str(root / f"merged-{ratio}"), ratios=[ratio])
    texts = [p.text for p in load_prompts(str(paths["prompts"]), "zh-Hant")][::6]
    paths["conversations"] = root / "conversations.json"
    paths["conversations"].write_text(json.dumps([conversation(t, None) for t in texts], ensure_ascii=False))
    return paths


def _probe(*args) -> dict:
    result = subprocess.run([sys.executable, PROBE, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["ids"]


def _descendants(pid: int) -> set[int]:
    from chatvector.engines.vllm import _descendants as descendants

    return descendants(pid)


def _alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and ") Z " not in Path(f"/proc/{p}/stat").read_text()}


def _vllm_processes() -> set[int]:
    """Every live process vLLM started, on this machine (they name themselves VLLM::EngineCore, VLLM::Worker...)."""
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if b"VLLM" in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except OSError:
            pass
    return _alive(found)


@pytest.fixture(scope="module")
def swapped(model) -> dict:
    return _probe("swapped", model["cp"], model["cv"], json.dumps(RATIOS), 1, model["conversations"])


@pytest.mark.parametrize("ratio", RATIOS[:2])
def test_weights_swapped_in_place_give_a_fresh_engines_replies_on_adds_checkpoint(ratio, model, swapped):
    assert swapped[str(ratio)] == _probe("fresh", model[ratio], model["conversations"])["fresh"]


def test_swapping_back_to_zero_restores_the_cps_replies_and_the_ratios_differ(swapped):
    assert swapped["0.0"] == swapped["before"] != swapped["0.5"] != swapped["1.0"]


@pytest.mark.parametrize("ratio", RATIOS[:2])
def test_vllms_replies_are_transformers_replies_on_the_same_checkpoint(ratio, model, swapped):
    conversations = json.loads(model["conversations"].read_text())
    hf_model, tokenizer = load_chat_model(str(model[ratio]), "cpu", "auto")
    replies = generate_replies(hf_model, tokenizer, conversations, 24, [6, 2], {"do_sample": False})
    assert [r.text for r in replies] == [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in swapped[str(ratio)]]


@pytest.mark.parametrize("options", [{"skip_embed": True, "special_tokens_map": {"<|end|>": "<|end|>", "<|assistant|>": "<|assistant|>"}},
                                     {"align_vocab": True, "special_tokens_map": "auto"}], ids=["skip_embed and a map", "align_vocab and auto"])
def test_the_merge_options_swap_in_what_add_writes_with_them(options, model, tmp_path):
    merged = add(str(model["cp"]), [str(model["cv"])], str(tmp_path / "merged"), ratios=[1.0], **options)
    (tmp_path / "options.json").write_text(json.dumps(options))
    found = _probe("swapped", model["cp"], model["cv"], "[1.0]", 1, model["conversations"], tmp_path / "options.json")
    assert found["1.0"] == _probe("fresh", merged, model["conversations"])["fresh"]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="tensor parallel 2 needs two cores")
def test_tensor_parallel_2_swaps_each_workers_shard_and_replies_alike(model, swapped):
    assert _probe("swapped", model["cp"], model["cv"], json.dumps(RATIOS), 2, model["conversations"]) == swapped


def _sweep(model, out, engine, *extra, ratios="[0,0.5,0.7]"):
    args = [sys.executable, str(ROOT / "sweep_ratios.py"), model["cp"], model["cv"], "--language", "zh-Hant", "--prompts", model["prompts"],
            "--ratios", ratios, "--max_new_tokens", 40, "--batch_size", 16, "--out", out, "--engine", engine, *extra]
    if engine == "vllm":
        args += ["--vllm_enforce_eager", "True"]
    return subprocess.run(list(map(str, args)), capture_output=True, text=True, env=ENV, timeout=900)


def test_the_sweep_on_vllm_makes_the_rows_and_recommendation_of_the_transformers_engine_and_resumes(model, tmp_path):
    vllm, hf = _sweep(model, tmp_path / "vllm", "vllm"), _sweep(model, tmp_path / "hf", "hf")
    assert vllm.returncode == 0 and hf.returncode == 0, vllm.stderr[-3000:] + hf.stderr[-3000:]
    rows = {engine: {(r["ratio"], r["prompt"]): (r["reply"], r["tokens"], r["ended_turn"], r["loose"]) for r in map(
        json.loads, (tmp_path / engine / "replies.jsonl").read_text().splitlines())} for engine in ("vllm", "hf")}
    assert rows["vllm"] == rows["hf"] and len(rows["hf"]) == 3 * 96
    summaries = [json.loads((tmp_path / engine / "summary.json").read_text()) for engine in ("vllm", "hf")]
    assert [s["engine"] for s in summaries] == ["vllm", "hf"] and summaries[0]["recommended_ratio"] == summaries[1]["recommended_ratio"]
    strip = lambda table: [{k: v for k, v in r.items() if k not in ("replies_per_s", "swap")} for r in table]  # noqa: E731
    assert strip(summaries[0]["ratios"]) == strip(summaries[1]["ratios"])
    again = _sweep(model, tmp_path / "vllm", "vllm")
    assert again.returncode == 0 and "(0 replies generated, 288 resumed" in again.stderr
    assert "Traceback" not in vllm.stderr and (tmp_path / "vllm" / "vllm.log").is_file()  # vLLM's own output goes to its log
    (tmp_path / "hf" / "replies.jsonl").rename(tmp_path / "vllm" / "replies.jsonl")
    other = _sweep(model, tmp_path / "vllm", "vllm", ratios="[0.5]")  # the engine is part of the settings: hf's rows are not reused
    assert other.returncode == 0 and "(96 replies generated" in other.stderr and "not reused" in other.stderr


@pytest.mark.parametrize("extra, option", [(["--max_model_len", "100000"], "--max_model_len"),
                                           (["--vllm_not_an_option", "1"], "unknown vLLM option --vllm_not_an_option")])
def test_a_start_that_fails_is_one_error_line_naming_the_option_and_leaves_no_process(extra, option, model, tmp_path):
    before = _vllm_processes()
    result = _sweep(model, tmp_path / "s", "vllm", *extra)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines[-1].startswith("error: ") and option in lines[-1], result.stderr[-3000:]
    assert "Traceback" not in result.stderr and not (tmp_path / "s" / "replies.jsonl").exists()
    assert _vllm_processes() <= before


def test_an_architecture_vllms_kernels_lack_is_one_error_line_pointing_to_the_transformers_engine(trios, vectors, tmp_path):
    """The tiny GPT-2 has heads of 8: vLLM's CPU attention runs none, and fails only at the first generation."""
    result = subprocess.run([sys.executable, str(ROOT / "sweep_ratios.py"), str(trios["gpt2"]["cp"]), str(vectors["gpt2"]), "--language", "en",
                             "--prompts", str(ROOT / "tests" / "data" / "plain_en.txt"), "--ratios", "[0.5]", "--out", str(tmp_path / "s"),
                             "--engine", "vllm", "--vllm_enforce_eager", "True"], capture_output=True, text=True, env=ENV, timeout=900)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines[-1].startswith("error: vLLM could not start") and "--engine hf" in lines[-1], result.stderr[-3000:]


SLOW_SWAP = """
import os, time
from chatvector.engines import vllm_worker
load = vllm_worker.ChatVectorWorker.cv_load
def slow(self, ratios):
    open(os.environ["CHATVECTOR_TEST_MARK"], "w").close()
    time.sleep(60)
    return load(self, ratios)
vllm_worker.ChatVectorWorker.cv_load = slow
"""


@pytest.mark.parametrize("during", ["swap", "generation"])
def test_ctrl_c_during_a_swap_or_generation_stops_every_vllm_process_and_keeps_the_finished_batches(during, model, tmp_path):
    env = {**ENV}
    if during == "swap":  # every process vLLM starts imports sitecustomize: here it slows the workers' swap down
        (tmp_path / "site").mkdir()
        (tmp_path / "site" / "sitecustomize.py").write_text(SLOW_SWAP)
        env.update(PYTHONPATH=f"{tmp_path / 'site'}:{ROOT}", CHATVECTOR_TEST_MARK=str(tmp_path / "swapping"))
    out = tmp_path / "s"
    args = [sys.executable, str(ROOT / "sweep_ratios.py"), str(model["cp"]), str(model["cv"]), "--language", "zh-Hant", "--prompts",
            str(model["prompts"]), "--ratios", "[0,0.5]", "--max_new_tokens", "400", "--batch_size", "1", "--out", str(out), "--engine", "vllm",
            "--vllm_enforce_eager", "True", "--max_model_len", "512"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    ready = (lambda: (tmp_path / "swapping").exists()) if during == "swap" else \
        (lambda: (out / "replies.jsonl").is_file() and len((out / "replies.jsonl").read_text().splitlines()) >= 2)
    while not ready():
        assert time.time() < deadline and process.poll() is None, process.stderr.read()[-3000:] if process.poll() is not None else ""
        time.sleep(0.1)
    engine = _alive(_descendants(process.pid))
    assert engine  # the engine core and its worker
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr
    time.sleep(1)
    assert not _alive(engine) and not _vllm_processes() & engine  # no orphan
    if during == "generation":
        kept = (out / "replies.jsonl").read_text().splitlines()
        assert len(kept) >= 2 and f"{len(kept)} replies are kept" in stderr


def test_a_rerun_ends_the_processes_a_killed_sweep_left_and_finishes(model, tmp_path):
    out = tmp_path / "s"
    args = [sys.executable, str(ROOT / "sweep_ratios.py"), str(model["cp"]), str(model["cv"]), "--language", "zh-Hant", "--prompts",
            str(model["prompts"]), "--ratios", "[0,0.5]", "--max_new_tokens", "400", "--batch_size", "1", "--out", str(out), "--engine", "vllm",
            "--vllm_enforce_eager", "True", "--max_model_len", "512"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 300
    while not ((out / "replies.jsonl").is_file() and (out / "replies.jsonl").read_text().count("\n") >= 2):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.1)
    engine = _alive(_descendants(process.pid))
    process.send_signal(signal.SIGKILL)  # nothing of ours runs: the engine's processes outlive the sweep
    process.wait(timeout=60)
    time.sleep(2)
    assert _alive(engine)
    args[args.index("--batch_size") + 1] = "16"
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not _alive(engine) and " resumed;" in result.stderr
