"""inspect_chat_vector.py: per-weight numbers equal a float64 computation; compare; moved rows; heatmap; JSON."""
import json
import shutil
import struct

import pytest
import torch
from transformers import AutoTokenizer

from chatvector.pipelines.inspection import NEAR_ZERO, inspect_vector, layer_and_module
from tests.conftest import load_weights, run_script
from tests.tiny_models import build_trio


@pytest.fixture(scope="module")
def stranger_vector(tmp_path_factory):
    """A vector of an independent trio of the same architecture: unrelated deltas."""
    from chatvector import extract

    root = tmp_path_factory.mktemp("stranger")
    trio = build_trio(root / "trio", "llama", torch.bfloat16, seed=21)
    return extract(str(trio["base"]), str(trio["chat"]), str(root / "cv"))


def test_names_split_into_layer_and_module():
    assert layer_and_module("model.layers.12.self_attn.q_proj.weight") == (12, "self_attn.q_proj")
    assert layer_and_module("transformer.h.3.mlp.c_fc.weight") == (3, "mlp.c_fc")
    assert layer_and_module("gpt_neox.layers.0.attention.dense.bias") == (0, "attention.dense.bias")
    assert layer_and_module("lm_head.weight") == (None, "lm_head")


def test_numbers_equal_a_float64_computation_relative_to_a_model(trios, vectors):
    llama = trios["llama"]
    report = inspect_vector(str(vectors["llama"]), model=str(llama["cp"]))
    delta, cp = load_weights(vectors["llama"], "chat_vector"), load_weights(llama["cp"])
    assert {w.name for w in report.weights} == set(delta)
    for w in report.weights:
        d = delta[w.name].double()
        assert w.delta_norm == pytest.approx(d.norm().item(), rel=1e-12), w.name
        assert w.relative == pytest.approx((d.norm() / cp[w.name].double().norm()).item(), rel=1e-12), w.name
        assert w.near_zero == pytest.approx((d.abs() <= NEAR_ZERO).double().mean().item(), abs=1e-12), w.name
    assert report.lineage and 0.1 < report.lineage["median"] < 0.35 and set(report.lineage["distances"]) == set(delta)


def test_without_a_model_the_base_is_the_reference_and_else_chat_minus_delta_for_embeddings(trios, tmp_path):
    from chatvector import extract

    llama = trios["llama"]
    base = shutil.copytree(llama["base"], tmp_path / "base")
    vector = extract(str(base), str(llama["chat"]), str(tmp_path / "cv"))
    truth = load_weights(llama["base"])
    report = inspect_vector(str(vector))
    assert report.reference.startswith("base ") and all(w.reference_norm is not None for w in report.weights)
    shutil.rmtree(base)  # the base is gone: only the embeddings have a reference, recovered as chat - delta
    report = inspect_vector(str(vector))
    for w in report.weights:
        if w.name in ("model.embed_tokens.weight", "lm_head.weight"):
            # chat - delta is the base up to the rounding of the stored delta (bf16 here)
            assert w.reference_norm == pytest.approx(truth[w.name].double().norm().item(), rel=1e-3), w.name
        else:
            assert w.reference_norm is None and w.relative is None


def test_compare_gives_cosine_one_with_itself_and_near_zero_with_an_unrelated_vector(vectors, stranger_vector):
    same = inspect_vector(str(vectors["llama"]), compare=str(vectors["llama"]))
    assert all(w.cosine == pytest.approx(1.0, abs=1e-12) for w in same.weights)
    assert same.layer_cosines() and all(c == pytest.approx(1.0, abs=1e-12) for c in same.layer_cosines().values())
    other = inspect_vector(str(vectors["llama"]), compare=str(stranger_vector))
    assert all(abs(c) < 0.1 for c in other.layer_cosines().values()), other.layer_cosines()


def test_the_rows_that_moved_most_come_with_their_tokens(vectors):
    report = inspect_vector(str(vectors["llama"]))
    norms = load_weights(vectors["llama"], "chat_vector")["model.embed_tokens.weight"].double().norm(dim=-1)
    assert [r["id"] for r in report.moved_rows] == torch.topk(norms, 10).indices.tolist()
    tokenizer = AutoTokenizer.from_pretrained(vectors["llama"])
    assert [r["token"] for r in report.moved_rows] == tokenizer.convert_ids_to_tokens([r["id"] for r in report.moved_rows])


def test_the_command_prints_the_table_and_writes_json_and_a_heatmap(trios, vectors, tmp_path):
    result = run_script("inspect_chat_vector.py", vectors["llama"], "--model", trios["llama"]["cp"], "--compare", vectors["llama"],
                        "--json", tmp_path / "i.json", "--plot", tmp_path / "h.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("|Δ|/|W| per layer and module") and "| 0 | " in result.stdout and "cosine" in result.stdout
    data = json.loads((tmp_path / "i.json").read_text())
    assert len(data["weights"]) == len(load_weights(vectors["llama"], "chat_vector")) and data["lineage"]
    png = (tmp_path / "h.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    modules = 9  # llama: 2 norms, 4 attention, 3 mlp
    assert (width, height) == (round((2.5 + 0.9 * modules) * 100), round((3.5 + 0.3 * 2) * 100))


def test_a_reference_format_vector_can_be_inspected(trios, tmp_path):
    from tests.test_reference_format import reference_extract

    llama = trios["llama"]
    vector = reference_extract(llama["base"], llama["chat"], tmp_path / "ref")
    report = inspect_vector(str(vector), model=str(llama["base"]))
    chat, base = load_weights(llama["chat"]), load_weights(llama["base"])
    for w in report.weights:
        assert w.delta_norm == pytest.approx((chat[w.name].double() - base[w.name].double()).norm().item(), rel=1e-2), w.name
