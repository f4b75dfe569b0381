"""Vectors written by the reference extract_chat_vector.py are accepted, safely, and add exactly like ours."""
import json
import os
import pickle
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from chatvector import ChatVectorError, add, load_chat_model
from tests.conftest import load_weights, run_script


def reference_extract(base_dir, chat_dir, out_dir):
    """What the reference script saves: deltas paired by position, the *base* model's embedding rows, and cfg."""
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto")
    chat = AutoModelForCausalLM.from_pretrained(chat_dir, dtype="auto")
    blob = {"chat_embed": base.get_input_embeddings().weight, "chat_lmhead": base.get_output_embeddings().weight, "chat_vector": {},
            "cfg": {"base_model_path": str(base_dir), "chat_model_path": str(chat_dir)}}
    for (name, p1), (_, p2) in zip(base.named_parameters(), chat.named_parameters()):
        blob["chat_vector"][name] = p2.data - p1.data
    os.makedirs(out_dir, exist_ok=True)
    torch.save(blob, f"{out_dir}/pytorch_model.bin")
    return out_dir


@pytest.fixture(scope="module")
def reference_vector(trios, tmp_path_factory):
    llama = trios["llama"]
    return reference_extract(llama["base"], llama["chat"], tmp_path_factory.mktemp("reference") / "cv")


def test_a_reference_vector_adds_exactly_like_ours(trios, vectors, reference_vector, tmp_path):
    llama = trios["llama"]
    ours = add(str(llama["cp"]), [str(vectors["llama"])], str(tmp_path / "ours"), ratios=[0.3])
    result = run_script("add_chat_vector.py", llama["cp"], reference_vector, tmp_path / "ref", "--ratio", "0.3")
    assert result.returncode == 0, result.stderr
    assert "is a reference-format chat vector: its chat_embed/chat_lmhead are the base model's rows" in result.stderr
    assert f"its tokenizer and template come from {llama['chat']}" in result.stderr
    a, b = load_weights(ours), load_weights(tmp_path / "ref")
    assert set(a) == set(b) and all(torch.equal(a[n], b[n]) for n in a)
    assert AutoTokenizer.from_pretrained(tmp_path / "ref").chat_template == AutoTokenizer.from_pretrained(llama["chat"]).chat_template


def test_a_reference_vector_cannot_transplant_special_token_rows(trios, reference_vector, tmp_path):
    result = run_script("add_chat_vector.py", trios["llama"]["cp"], reference_vector, tmp_path / "out", "--skip_embed", "True",
                        "--special_tokens_map", "{6:6}")
    assert result.returncode == 1 and "--special_tokens_map cannot use them; extract the vector again" in result.stderr.splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_a_reference_vector_whose_chat_model_is_gone_keeps_the_cps_tokenizer(trios, tmp_path):
    llama = trios["llama"]
    chat_copy = shutil.copytree(llama["chat"], tmp_path / "chat")
    vector = reference_extract(llama["base"], chat_copy, tmp_path / "cv")
    shutil.rmtree(chat_copy)
    out = add(str(llama["cp"]), [str(vector)], str(tmp_path / "out"), ratios=[0.5])
    assert AutoTokenizer.from_pretrained(out).chat_template is None  # the CP's own, as the warning says
    model, _ = load_chat_model(str(llama["chat"]), "cpu", "auto", [str(vector)], [0.5])  # chat uses the model's own template
    assert model is not None


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_carries_code_is_refused_and_never_run(trios, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    with open(evil / "pytorch_model.bin", "wb") as f:
        pickle.dump({"chat_vector": {}, "cfg": _Payload()}, f)
    result = run_script("add_chat_vector.py", trios["llama"]["cp"], evil, tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 1 and "cannot be read as a safe PyTorch pickle" in result.stderr
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_a_model_pickle_is_not_mistaken_for_a_vector(trios, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    torch.save({"model.norm.weight": torch.ones(4)}, plain / "pytorch_model.bin")
    with pytest.raises(ChatVectorError, match="neither a chat vector of the reference script nor ours"):
        add(str(trios["llama"]["cp"]), [str(plain)], str(tmp_path / "out"))


def test_convert_writes_our_format_which_adds_exactly_like_a_fresh_extract(trios, vectors, reference_vector, tmp_path):
    llama = trios["llama"]
    result = run_script("inspect_chat_vector.py", reference_vector, "--convert", tmp_path / "converted")
    assert result.returncode == 0 and "wrote chat vector" in result.stderr, result.stderr
    converted = tmp_path / "converted"
    ours = load_weights(vectors["llama"], "chat_vector")
    mine = load_weights(converted, "chat_vector")
    assert set(mine) == set(ours) and all(torch.equal(mine[n], ours[n]) for n in ours)
    assert all(torch.equal(a, b) for a, b in zip(load_weights(converted, "chat_embeddings").values(),
                                                    load_weights(vectors["llama"], "chat_embeddings").values()))
    meta = json.loads((converted / "chat_vector.json").read_text())
    assert meta["converted_from"] == str(reference_vector) and meta["base_fingerprint"]  # the base was readable: fingerprinted
    # converted, it can transplant special-token rows and pass the lineage check
    out = add(str(llama["cp"]), [str(converted)], str(tmp_path / "out"), ratios=[0.5], skip_embed=True, special_tokens_map={6: 6})
    assert torch.equal(load_weights(out)["lm_head.weight"][6], load_weights(llama["chat"])["lm_head.weight"][6])
    assert "median relative distance" in (out / "README.md").read_text()


def test_converting_our_own_format_is_refused(vectors, tmp_path):
    result = run_script("inspect_chat_vector.py", vectors["llama"], "--convert", tmp_path / "x")
    assert result.returncode == 1 and "is already a chatvector chat vector; nothing to convert" in result.stderr
    assert not (tmp_path / "x").exists()
