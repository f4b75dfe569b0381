"""The lineage check: a CP trained from the vector's base passes; an unrelated model of the same shape is refused."""
import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from chatvector import ChatVectorError, add, load_chat_model
from chatvector.merge.lineage import FINGERPRINT_FILE, SPAN, SPANS, sample_spans
from tests.conftest import load_weights, run_script
from tests.tiny_models import build_trio


def _with_shift(source, target, scale: float, seed: int = 7):
    """A copy of a model with every floating-point weight moved by scale * N(0, 1): a stand-in for training."""
    shutil.copytree(source, target)
    generator = torch.Generator().manual_seed(seed)
    state = load_weights(target)
    moved = {n: (t.double() + scale * torch.randn(t.shape, generator=generator, dtype=torch.float64)).to(t.dtype)
             if t.is_floating_point() else t for n, t in state.items()}
    save_file(moved, str(target / "model.safetensors"), metadata={"format": "pt"})
    return target


def test_the_fingerprint_holds_the_base_values_at_the_documented_positions(trios, vectors):
    sample = load_file(vectors["llama"] / FINGERPRINT_FILE)
    base = load_weights(trios["llama"]["base"])
    assert set(sample) == {n for n, t in base.items() if t.is_floating_point()}
    for name, values in sample.items():
        flat = base[name].reshape(-1)
        expected = torch.cat([flat[a:b] for a, b in sample_spans(name, tuple(base[name].shape))])
        assert torch.equal(values, expected), name
    assert json.loads((vectors["llama"] / "chat_vector.json").read_text())["base_fingerprint"]["file"] == FINGERPRINT_FILE


def test_the_fingerprint_of_a_70b_model_is_a_few_megabytes():
    hidden, inter, vocab, layers, kv = 8192, 28672, 128256, 80, 1024  # Llama-3-70B
    shapes = [(vocab, hidden), (vocab, hidden), (hidden,)] + layers * [(hidden, hidden), (kv, hidden), (kv, hidden), (hidden, hidden),
                                                                      (inter, hidden), (inter, hidden), (hidden, inter), (hidden,), (hidden,)]
    sampled = sum(sum(b - a for a, b in sample_spans(f"w{i}", s)) for i, s in enumerate(shapes))
    assert sampled <= len(shapes) * SPANS * SPAN and sampled * 2 < 4e6  # bf16 bytes
    assert all(0 <= a < b <= math.prod(s) for i, s in enumerate(shapes) for a, b in sample_spans(f"w{i}", s))


def test_a_cp_trained_from_the_base_passes_and_the_card_records_its_distance(trios, vectors, tmp_path):
    llama = trios["llama"]
    result = run_script("add_chat_vector.py", llama["cp"], vectors["llama"], tmp_path / "out")
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    card = (tmp_path / "out" / "README.md").read_text()
    # the distance the card reports equals a float64 computation on the full weights at the same spans
    base, cp = load_weights(llama["base"]), load_weights(llama["cp"])
    distances = []
    for name, weight in base.items():
        if weight.is_floating_point() and weight.dim() >= 2:
            spans = sample_spans(name, tuple(weight.shape))
            pick = lambda t: torch.cat([t.reshape(-1)[a:b] for a, b in spans]).double()  # noqa: E731
            distances.append(((pick(cp[name]) - pick(weight)).norm() / pick(weight).norm()).item())
    median = sorted(distances)[len(distances) // 2]
    assert 0.05 < median < 0.35 and f"median relative distance {median:.3f} over {len(distances)} weight matrices" in card


@pytest.mark.parametrize("stranger", ["independent model", "sibling family's CP"])
def test_a_cp_from_another_base_is_refused_before_anything_is_written(stranger, trios, vectors, tmp_path):
    llama = trios["llama"]
    other = build_trio(tmp_path / "other", "llama", torch.bfloat16, seed=11)
    cp = other["base"] if stranger == "independent model" else other["cp"]
    result = run_script("add_chat_vector.py", cp, vectors["llama"], tmp_path / "out")
    assert result.returncode == 1 and not (tmp_path / "out").exists()
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: the CP model does not descend from {llama['base']}, the base of chat vector {vectors['llama']}")
    assert "model.layers." in message and "--check_lineage False" in message
    median = float(message.split("median relative distance ")[1].split()[0])
    assert 1.2 < median < 1.6  # independent weights of equal size: sqrt(2)
    forced = run_script("add_chat_vector.py", cp, vectors["llama"], tmp_path / "out", "--check_lineage", "False")
    assert forced.returncode == 0 and "lineage: `{" in (tmp_path / "out" / "README.md").read_text()


def test_a_far_cp_is_a_warning_not_an_error(trios, vectors, tmp_path):
    far = _with_shift(trios["llama"]["base"], tmp_path / "far", 0.012)  # about 0.6 of the weights' own size
    result = run_script("add_chat_vector.py", far, vectors["llama"], tmp_path / "out")
    assert result.returncode == 0 and "warning: the CP model is far from" in result.stderr, result.stderr


def test_chat_with_a_vector_checks_lineage_too(trios, vectors, tmp_path):
    other = build_trio(tmp_path / "other", "llama", torch.bfloat16, seed=12)
    with pytest.raises(ChatVectorError, match="the model does not descend from"):
        load_chat_model(str(other["cp"]), "cpu", "auto", [str(vectors["llama"])], [0.5])
    load_chat_model(str(other["cp"]), "cpu", "auto", [str(vectors["llama"])], [0.5], check_lineage=False)


def test_a_vector_without_a_fingerprint_is_merged_with_a_note(trios, vectors, tmp_path):
    old = shutil.copytree(vectors["llama"], tmp_path / "old")
    (old / FINGERPRINT_FILE).unlink()
    out = add(str(trios["llama"]["cp"]), [str(old)], str(tmp_path / "out"))
    assert "not checked (no fingerprint)" in (out / "README.md").read_text()
