"""The scripts as users run them: fire's surprises, one-line errors, nothing half-written, inputs untouched."""
import hashlib
import signal
import subprocess
import sys
import time

import pytest
import torch

from chatvector import ChatVectorError
from chatvector.cli.options import as_bool, as_paths, as_ratios, as_token_map
from tests.conftest import ROOT, SCRIPT_ENV, load_weights, run_script


def _digest(directory) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


def _assert_failed(result, message: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr
    assert message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


def test_the_reference_command_lines_work_as_written(trios, tmp_path):
    llama = trios["llama"]
    before = {role: _digest(path) for role, path in llama.items()}
    cv = tmp_path / "cv"
    result = run_script("extract_chat_vector.py", llama["base"], llama["chat"], cv)
    assert result.returncode == 0, result.stderr
    result = run_script("add_chat_vector.py", llama["cp"], f"['{cv}']", tmp_path / "out", "--ratio", "[1]",
                        "--skip_embed", "True", "--special_tokens_map", "{6:6,4:4}")
    assert result.returncode == 0, result.stderr
    merged, chat = load_weights(tmp_path / "out"), load_weights(llama["chat"])
    assert torch.equal(merged["lm_head.weight"][6], chat["lm_head.weight"][6])
    assert {role: _digest(path) for role, path in llama.items()} == before  # inputs untouched


def test_fire_values_are_normalised_when_unambiguous(trios, vectors, tmp_path):
    llama = trios["llama"]
    result = run_script("add_chat_vector.py", llama["cp"], vectors["llama"], tmp_path / "out", "--ratio", "0.5", "--skip_embed=false")
    assert result.returncode == 0, result.stderr
    expected = run_script("add_chat_vector.py", llama["cp"], f"['{vectors['llama']}']", tmp_path / "ref", "--ratio", "[0.5]")
    assert expected.returncode == 0
    a, b = load_weights(tmp_path / "out"), load_weights(tmp_path / "ref")
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("value, expected", [(True, True), ("false", False), ("True", True), ("no", False), (0, False)])
def test_booleans_accept_the_unambiguous_spellings(value, expected):
    assert as_bool(value, "skip_embed") is expected


@pytest.mark.parametrize("value", ["maybe", 2, None, [True]])
def test_anything_else_is_not_a_boolean(value):
    with pytest.raises(ChatVectorError, match="--skip_embed must be True or False"):
        as_bool(value, "skip_embed")


def test_lists_ratios_and_maps_are_checked():
    assert as_paths("cv", "CV") == ["cv"] and as_paths(("a", "b"), "CV") == ["a", "b"]
    assert as_ratios(0.5, 1) == [0.5] and as_ratios(None, 1) == [1.0] and as_ratios((1, 2), 2) == [1.0, 2.0]
    assert as_token_map({1: 2}) == {1: 2} and as_token_map(None) == {}
    with pytest.raises(ChatVectorError, match="2 chat vectors need --ratio"):
        as_ratios(None, 2)
    with pytest.raises(ChatVectorError, match="--ratio must be a number or a list of numbers"):
        as_ratios(["x"], 1)
    with pytest.raises(ChatVectorError, match="is not a well-formed list"):
        as_paths("['a',", "CHAT_VECTOR_PATH")


BAD_ADD = {
    "missing CP": (lambda t, v, o: ["/nonexistent/cp", v["llama"], o], "CP model /nonexistent/cp does not exist"),
    "missing vector": (lambda t, v, o: [t["llama"]["cp"], "/nope/cv", o], "chat vector /nope/cv does not exist"),
    "not a vector": (lambda t, v, o: [t["llama"]["cp"], t["llama"]["chat"], o], "is not a chat vector directory"),
    "other architecture": (lambda t, v, o: [t["qwen2"]["cp"], v["llama"], o], "CP model is qwen2 (Qwen2ForCausalLM) but the chat vector"),
    "ratio length": (lambda t, v, o: [t["llama"]["cp"], v["llama"], o, "--ratio", "[0.5,0.5]"], "--ratio has 2 values for 1 chat vectors"),
    "malformed list": (lambda t, v, o: [t["llama"]["cp"], "['a',", o], "is not a well-formed list"),
    "malformed dict": (lambda t, v, o: [t["llama"]["cp"], v["llama"], o, "--special_tokens_map", "{6:"], "--special_tokens_map must be a dict"),
    "id out of range": (lambda t, v, o: [t["llama"]["cp"], v["llama"], o, "--special_tokens_map", "{999:6}"], "CP token id 999 is out of range"),
    "bad bool": (lambda t, v, o: [t["llama"]["cp"], v["llama"], o, "--skip_embed", "maybe"], "--skip_embed must be True or False"),
    "bad dtype": (lambda t, v, o: [t["llama"]["cp"], v["llama"], o, "--dtype", "int8"], "--dtype must be one of"),
    "output is an input": (lambda t, v, o: [t["llama"]["cp"], v["llama"], t["llama"]["cp"], "--overwrite", "True"], "overlaps the input"),
    "output inside an input": (lambda t, v, o: [t["llama"]["cp"], v["llama"], v["llama"] / "sub"], "overlaps the input"),
}


@pytest.mark.parametrize("case", BAD_ADD)
def test_bad_add_input_is_one_error_line_and_writes_nothing(case, trios, vectors, tmp_path):
    args, message = BAD_ADD[case]
    before = _digest(trios["llama"]["cp"])
    result = run_script("add_chat_vector.py", *args(trios, vectors, tmp_path / "out"))
    _assert_failed(result, message)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]
    assert _digest(trios["llama"]["cp"]) == before


def test_a_different_shape_names_the_tensor_both_shapes_and_the_way_out(trios, tmp_path):
    from tests.tiny_models import build_trio

    wide = build_trio(tmp_path / "wide", "llama", torch.bfloat16)  # same shapes; now grow the CP's vocabulary
    import json

    config = json.loads((trios["llama"]["cp"] / "config.json").read_text())
    from safetensors.torch import save_file

    state = load_weights(trios["llama"]["cp"])
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        state[name] = torch.cat([state[name], state[name][:4]])
    save_file(state, wide["cp"] / "model.safetensors", metadata={"format": "pt"})
    (wide["cp"] / "config.json").write_text(json.dumps({**config, "vocab_size": 132}))
    cv = tmp_path / "cv"
    assert run_script("extract_chat_vector.py", trios["llama"]["base"], trios["llama"]["chat"], cv).returncode == 0
    result = run_script("add_chat_vector.py", wide["cp"], cv, tmp_path / "out")
    _assert_failed(result, "tensor lm_head.weight has shape [132, 32] in the CP model but [128, 32] in the chat vector")
    assert "--skip_embed True" in result.stderr
    assert run_script("add_chat_vector.py", wide["cp"], cv, tmp_path / "out", "--skip_embed", "True").returncode == 0


def test_bad_extract_inputs(trios, tmp_path):
    _assert_failed(run_script("extract_chat_vector.py", trios["llama"]["base"], trios["qwen2"]["chat"], tmp_path / "o"),
                   "the base model is llama (LlamaForCausalLM) but the chat model is qwen2")
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    for f in trios["llama"]["chat"].iterdir():
        (truncated / f.name).write_bytes(f.read_bytes()[: -100] if f.suffix == ".safetensors" else f.read_bytes())
    _assert_failed(run_script("extract_chat_vector.py", trios["llama"]["base"], truncated, tmp_path / "o"), "is truncated or corrupt")
    assert not (tmp_path / "o").exists()


def test_an_existing_output_is_kept_unless_overwrite(trios, vectors, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    _assert_failed(run_script("add_chat_vector.py", trios["llama"]["cp"], vectors["llama"], out), "pass --overwrite True")
    assert (out / "keep.txt").read_text() == "mine"
    assert run_script("add_chat_vector.py", trios["llama"]["cp"], vectors["llama"], out, "--overwrite", "True").returncode == 0
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


SLOW_WRITER = """
import runpy, sys, time
import chatvector.io.writer as w
def slowed(place):
    def slow(self, *args):
        place(self, *args); time.sleep(0.2)
    return slow
w.SafetensorsWriter.write, w.SafetensorsWriter.copy = slowed(w.SafetensorsWriter.write), slowed(w.SafetensorsWriter.copy)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def test_a_process_killed_mid_write_leaves_nothing_at_the_output_path(trios, vectors, tmp_path):
    out = tmp_path / "out"
    env = SCRIPT_ENV
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(ROOT / "add_chat_vector.py"), str(trios["llama"]["cp"]),
                                str(vectors["llama"]), str(out)], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not any(p.stat().st_size > 0 for p in tmp_path.glob(".out.chatvector-partial-*/model*.safetensors")):
        assert time.time() < deadline and process.poll() is None, "the run never started writing"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()  # the partial output is only in a hidden sibling
    result = run_script("add_chat_vector.py", trios["llama"]["cp"], vectors["llama"], out)
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob(".out.chatvector-partial-*"))  # the dead run's leftovers were cleaned


def test_sigterm_removes_the_partial_output(trios, vectors, tmp_path):
    env = SCRIPT_ENV
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(ROOT / "add_chat_vector.py"), str(trios["llama"]["cp"]),
                                str(vectors["llama"]), str(tmp_path / "out")], env=env, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.chatvector-partial-*/model*.safetensors")):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.05)
    process.terminate()
    assert process.wait() != 0
    assert not list(tmp_path.iterdir())
