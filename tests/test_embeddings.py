"""Embedding rules: found from the architecture, --skip_embed, --special_tokens_map."""
import pytest
import torch

from chatvector import ChatVectorError, add
from chatvector.io.checkpoint import Checkpoint
from chatvector.merge.embeddings import KNOWN_LAYOUTS, find_embedding_keys, known_embedding_keys
from tests.conftest import assert_within_ulp, load_weights

EXPECTED_KEYS = {
    "llama": ("model.embed_tokens.weight", "lm_head.weight"),
    "qwen2": ("model.embed_tokens.weight", "model.embed_tokens.weight"),  # tied: one tensor
    "gpt2": ("transformer.wte.weight", "transformer.wte.weight"),
    "gpt_neox": ("gpt_neox.embed_in.weight", "embed_out.weight"),  # module lm_head, saved as embed_out
}


@pytest.mark.parametrize("arch", EXPECTED_KEYS)
def test_embeddings_are_found_from_the_architecture_under_their_checkpoint_names(arch, trios):
    with Checkpoint(trios[arch]["chat"]) as checkpoint:
        keys = find_embedding_keys(trios[arch]["chat"], list(checkpoint.infos))
    assert (keys.input, keys.output) == EXPECTED_KEYS[arch]


@pytest.mark.parametrize("arch", EXPECTED_KEYS)
def test_config_rules_and_the_meta_model_agree_on_every_architecture_of_the_suite(arch, trios):
    import json

    model_dir = trios[arch]["chat"]
    with Checkpoint(model_dir) as checkpoint:
        keys = list(checkpoint.infos)
    assert known_embedding_keys(json.loads((model_dir / "config.json").read_text()), keys) == find_embedding_keys(model_dir, keys)


# Every listed architecture, tied and untied where the family has both, saved as transformers saves it
LISTED = sorted({*KNOWN_LAYOUTS} - {"gpt2", "gpt_neox"})


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("model_type", LISTED)
def test_config_rules_agree_with_the_meta_model_on_every_listed_architecture(model_type, tied, tmp_path):
    import json

    from transformers import AutoConfig, AutoModelForCausalLM

    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                 vocab_size=64, head_dim=8, tie_word_embeddings=tied, moe_intermediate_size=16, num_experts=2, num_local_experts=2,
                 num_experts_per_tok=1, shared_expert_intermediate_size=16, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **small)).save_pretrained(tmp_path)
    with Checkpoint(tmp_path) as checkpoint:
        keys = list(checkpoint.infos)
    config_json = json.loads((tmp_path / "config.json").read_text())
    assert known_embedding_keys(config_json, keys) == find_embedding_keys(tmp_path, keys)


def test_an_unlisted_architecture_falls_back_to_the_meta_model(trios):
    import json

    from chatvector.merge.embeddings import embedding_keys

    model_dir = trios["llama"]["chat"]
    config = {**json.loads((model_dir / "config.json").read_text()), "model_type": "my_llama_fork"}
    with Checkpoint(model_dir) as checkpoint:
        keys = list(checkpoint.infos)
    assert known_embedding_keys(config, keys) is None
    assert embedding_keys(model_dir, config, keys) == find_embedding_keys(model_dir, keys)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt_neox"])
def test_vector_directory_carries_the_chat_models_own_embedding_rows(arch, trios, vectors):
    chat, saved = load_weights(trios[arch]["chat"]), load_weights(vectors[arch], "chat_embeddings")
    assert set(saved) == set(EXPECTED_KEYS[arch])
    assert all(torch.equal(value, chat[name]) for name, value in saved.items())


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_skip_embed_keeps_the_cp_rows_and_adds_everything_else(arch, trios, vectors, tmp_path):
    out = add(str(trios[arch]["cp"]), [str(vectors[arch])], str(tmp_path / "o"), ratios=[1.0], skip_embed=True, device="cpu")
    cp, vector, merged = load_weights(trios[arch]["cp"]), load_weights(vectors[arch], "chat_vector"), load_weights(out)
    for name in EXPECTED_KEYS[arch]:
        assert torch.equal(merged[name], cp[name]), name
    changed = [n for n in merged if n not in EXPECTED_KEYS[arch] and not torch.equal(merged[n], cp[n])]
    assert len(changed) == len([n for n in cp if n not in EXPECTED_KEYS[arch]])


@pytest.mark.parametrize("skip_embed", [False, True])
def test_special_token_rows_become_the_chat_models_rows(skip_embed, trios, vectors, tmp_path):
    llama = trios["llama"]
    token_map = {6: 6, 4: 3}  # <|end|> -> <|end|>, and a row taken from another chat id
    out = add(str(llama["cp"]), [str(vectors["llama"])], str(tmp_path / "o"), ratios=[0.5], skip_embed=skip_embed,
              special_tokens_map=token_map, device="cpu")
    cp, chat, merged = load_weights(llama["cp"]), load_weights(llama["chat"]), load_weights(out)
    vector = load_weights(vectors["llama"], "chat_vector")
    for name in EXPECTED_KEYS["llama"]:
        for cp_id, chat_id in token_map.items():
            assert torch.equal(merged[name][cp_id], chat[name][chat_id]), (name, cp_id)
        other = [i for i in range(cp[name].shape[0]) if i not in token_map]
        delta = 0 if skip_embed else 0.5 * vector[name][other].double()
        truth = cp[name][other].double() + delta
        assert_within_ulp(merged[name][other], truth, 1, name, magnitude=cp[name][other].double().abs() + abs(delta))


def test_special_rows_of_several_vectors_are_their_ratio_weighted_mean(trios, vectors, tmp_path):
    from chatvector import extract

    llama = trios["llama"]
    second = extract(str(llama["base"]), str(llama["cp"]), str(tmp_path / "cv2"), device="cpu")  # "chat" = cp here
    out = add(str(llama["cp"]), [str(vectors["llama"]), str(second)], str(tmp_path / "o"), ratios=[0.75, 0.25],
              skip_embed=True, special_tokens_map={5: 6}, device="cpu")
    chat, cp, merged = load_weights(llama["chat"]), load_weights(llama["cp"]), load_weights(out)
    for name in EXPECTED_KEYS["llama"]:
        truth = 0.75 * chat[name][6].double() + 0.25 * cp[name][6].double()
        assert_within_ulp(merged[name][5], truth, 1, name)


def test_tied_embeddings_get_the_special_rows_once(trios, vectors, tmp_path):
    out = add(str(trios["qwen2"]["cp"]), [str(vectors["qwen2"])], str(tmp_path / "o"), special_tokens_map={6: 6}, device="cpu")
    merged, chat = load_weights(out), load_weights(trios["qwen2"]["chat"])
    assert "lm_head.weight" not in merged
    assert torch.equal(merged["model.embed_tokens.weight"][6], chat["model.embed_tokens.weight"][6])


@pytest.mark.parametrize("token_map, message", [
    ({500: 6}, "CP token id 500 is out of range for model.embed_tokens.weight with 128 rows"),
    ({6: -1}, "chat token id -1 is out of range"),
])
def test_special_token_ids_out_of_range_are_refused(token_map, message, trios, vectors, tmp_path):
    with pytest.raises(ChatVectorError, match=message):
        add(str(trios["llama"]["cp"]), [str(vectors["llama"])], str(tmp_path / "o"), special_tokens_map=token_map, device="cpu")
    assert not (tmp_path / "o").exists()
