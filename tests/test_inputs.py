"""Every input form gives the same result: single file, shards + index, legacy .bin, hub id, moved vector."""
import json
import shutil

import pytest
import torch

from chatvector import ChatVectorError, add, extract
from tests.conftest import load_weights
from tests.tiny_models import build_trio


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """The llama trio saved three ways: one file each, shards with an index, pytorch_model.bin."""
    root = tmp_path_factory.mktemp("variants")
    return {
        "single": build_trio(root / "single", "llama", torch.bfloat16),
        "sharded": build_trio(root / "sharded", "llama", torch.bfloat16, max_shard_size="20KB"),
        "bin": build_trio(root / "bin", "llama", torch.bfloat16, legacy_bin=True),
    }


def _extract_and_add(trio, out):
    vector = extract(str(trio["base"]), str(trio["chat"]), str(out / "cv"), device="cpu")
    return vector, add(str(trio["cp"]), [str(vector)], str(out / "model"), ratios=[0.5], device="cpu")


def test_sharded_and_bin_inputs_give_the_same_result_as_single_files(variants, tmp_path):
    assert len(list(variants["sharded"]["chat"].glob("model-*.safetensors"))) > 1
    assert (variants["bin"]["chat"] / "pytorch_model.bin").is_file()
    results = {kind: _extract_and_add(trio, tmp_path / kind) for kind, trio in variants.items()}
    reference_vector, reference_model = (load_weights(p, prefix) for p, prefix in zip(results["single"], ("chat_vector", "model")))
    for kind in ("sharded", "bin"):
        vector, model = load_weights(results[kind][0], "chat_vector"), load_weights(results[kind][1])
        assert vector.keys() == reference_vector.keys() and model.keys() == reference_model.keys()
        assert all(torch.equal(vector[n], reference_vector[n]) for n in vector), kind
        assert all(torch.equal(model[n], reference_model[n]) for n in model), kind


def test_outputs_are_sharded_with_a_transformers_index(variants, tmp_path):
    import json

    trio = variants["single"]
    vector = extract(str(trio["base"]), str(trio["chat"]), str(tmp_path / "cv"), device="cpu", max_shard_size="30KB")
    out = add(str(trio["cp"]), [str(vector)], str(tmp_path / "m"), device="cpu", max_shard_size="30KB")
    for directory, prefix in ((vector, "chat_vector"), (out, "model")):
        index = json.loads((directory / f"{prefix}.safetensors.index.json").read_text())
        shards = sorted(directory.glob(f"{prefix}-*-of-*.safetensors"))
        assert len(shards) > 1 and set(index["weight_map"].values()) == {s.name for s in shards}
        weights = load_weights(directory, prefix)
        assert set(index["weight_map"]) == set(weights)
        assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in weights.values())
    reference = load_weights(add(str(trio["cp"]), [str(vector)], str(tmp_path / "m1"), device="cpu"))
    assert all(torch.equal(t, reference[n]) for n, t in load_weights(out).items())


def test_a_chat_vector_directory_still_works_after_being_moved(variants, tmp_path):
    trio = variants["single"]
    vector = extract(str(trio["base"]), str(trio["chat"]), str(tmp_path / "cv"), device="cpu")
    expected = load_weights(add(str(trio["cp"]), [str(vector)], str(tmp_path / "a"), device="cpu"))
    moved = shutil.move(str(vector), str(tmp_path / "elsewhere" / "renamed"))
    shutil.rmtree(trio["chat"].parent / "unused", ignore_errors=True)
    got = load_weights(add(str(trio["cp"]), [moved], str(tmp_path / "b"), device="cpu"))
    assert all(torch.equal(got[n], expected[n]) for n in expected)


def test_hub_ids_resolve_through_the_local_cache(variants, tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    for role in ("base", "chat"):
        snapshot = cache / f"models--tiny--{role}" / "snapshots" / ("0" * 40)
        shutil.copytree(variants["single"][role], snapshot)
        (cache / f"models--tiny--{role}" / "refs").mkdir()
        (cache / f"models--tiny--{role}" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    vector = extract("tiny/base", "tiny/chat", str(tmp_path / "cv"), device="cpu")
    direct = extract(str(variants["single"]["base"]), str(variants["single"]["chat"]), str(tmp_path / "cv2"), device="cpu")
    a, b = load_weights(vector, "chat_vector"), load_weights(direct, "chat_vector")
    assert all(torch.equal(a[n], b[n]) for n in a)
    meta = json.loads((vector / "chat_vector.json").read_text())
    assert (meta["base_model"], meta["base_model_revision"]) == ("tiny/base", "0" * 40)  # the hub id and commit, not a cache path
    assert str(cache) not in (vector / "chat_vector.json").read_text()
    with pytest.raises(ChatVectorError, match="tiny/missing does not exist: no such directory, and no hub model of that name"):
        extract("tiny/missing", "tiny/chat", str(tmp_path / "cv3"), device="cpu")
