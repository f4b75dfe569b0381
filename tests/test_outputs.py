"""Outputs are ordinary Hugging Face checkpoints: they load, compute the right logits, and carry the chat setup."""
import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from chatvector import add, apply_chat_vectors
from tests.conftest import ARCHS, load_weights


@pytest.fixture(scope="module")
def merged(trios, vectors, tmp_path_factory):
    root = tmp_path_factory.mktemp("merged")
    return {arch: add(str(trios[arch]["cp"]), [str(vectors[arch])], str(root / arch), ratios=[0.5], device="cpu") for arch in ARCHS}


@pytest.mark.parametrize("arch", ARCHS)
def test_written_checkpoint_loads_and_its_logits_equal_the_in_memory_merge(arch, trios, vectors, merged, tmp_path):
    from safetensors.torch import save_file

    vector = load_weights(vectors[arch], "chat_vector")
    state = {n: apply_chat_vectors(t, [vector[n]], [0.5]) if n in vector else t for n, t in load_weights(trios[arch]["cp"]).items()}
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})  # the library's writer
    shutil.copy(trios[arch]["cp"] / "config.json", tmp_path)
    ids = torch.tensor([[1, 3, 20, 34, 50, 6, 4]])
    with torch.no_grad():
        logits = AutoModelForCausalLM.from_pretrained(merged[arch]).eval()(ids).logits
        expected = AutoModelForCausalLM.from_pretrained(tmp_path).eval()(ids).logits
        cp_logits = AutoModelForCausalLM.from_pretrained(trios[arch]["cp"]).eval()(ids).logits
    assert logits.dtype == ARCHS[arch]
    assert torch.equal(logits, expected)
    assert not torch.equal(logits, cp_logits)


def test_tokenizer_is_the_cps_with_the_chat_template_and_eos(trios, merged):
    tokenizer = AutoTokenizer.from_pretrained(merged["llama"])
    cp_tokenizer = AutoTokenizer.from_pretrained(trios["llama"]["cp"])
    chat_tokenizer = AutoTokenizer.from_pretrained(trios["llama"]["chat"])
    assert cp_tokenizer.chat_template is None and cp_tokenizer.eos_token == "</s>"
    assert tokenizer.chat_template == chat_tokenizer.chat_template
    assert tokenizer.eos_token == "<|end|>" and tokenizer.eos_token_id == 6
    assert tokenizer.get_vocab() == cp_tokenizer.get_vocab()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<s><|user|> hello <|end|> <|assistant|> "


def test_generation_config_comes_from_the_chat_model_with_all_its_eos_ids(merged):
    assert GenerationConfig.from_pretrained(merged["llama"]).eos_token_id == [6, 2]


def test_config_is_the_cps_but_its_eos_is_the_chat_models_and_the_card_records_how_the_model_was_made(trios, merged):
    from huggingface_hub import ModelCard

    config, cp_config = (json.loads((d / "config.json").read_text()) for d in (merged["llama"], trios["llama"]["cp"]))
    assert config == {**cp_config, "eos_token_id": [6, 2]}  # the end-of-turn ids, as generation_config.json states them
    card = ModelCard.load(merged["llama"] / "README.md")
    assert card.data.base_model == [str(trios["llama"][r]) for r in ("cp", "base", "chat")]
    assert "chat-vector" in card.data.tags
    assert "| 0.5 |" in card.text and "skip_embed: `False`" in card.text


def test_vector_directory_is_self_contained(trios, vectors):
    files = {p.name for p in vectors["llama"].iterdir()}
    assert {"chat_vector.safetensors", "chat_embeddings.safetensors", "chat_vector.json", "README.md",
            "tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= files
    from huggingface_hub import ModelCard

    card = ModelCard.load(vectors["llama"] / "README.md")
    assert card.data.base_model == [str(trios["llama"][r]) for r in ("base", "chat")] and "chat-vector" in card.data.tags
    meta = json.loads((vectors["llama"] / "chat_vector.json").read_text())
    assert meta["format_version"] == 1 and meta["architectures"] == ["LlamaForCausalLM"] and meta["dtype"] == "bfloat16"
    assert meta["embeddings"] == {"input_embedding": "model.embed_tokens.weight", "output_embedding": "lm_head.weight"}
    assert meta["config"] == json.loads((trios["llama"]["chat"] / "config.json").read_text())
    assert AutoTokenizer.from_pretrained(vectors["llama"]).chat_template == AutoTokenizer.from_pretrained(trios["llama"]["chat"]).chat_template


def test_tokenizer_files_and_transformers_routes_write_the_same_tokenizer_and_generation_config(trios, vectors, tmp_path):
    """Ids take the `tokenizers`-only route (no transformers import); a token string needs transformers: same result."""
    import json

    from transformers import AutoTokenizer

    llama = trios["llama"]
    by_id = add(str(llama["cp"]), [str(vectors["llama"])], str(tmp_path / "ids"), ratios=[0.5], special_tokens_map={6: 6}, device="cpu")
    by_name = add(str(llama["cp"]), [str(vectors["llama"])], str(tmp_path / "names"), ratios=[0.5],
                  special_tokens_map={"<|end|>": "<|end|>"}, device="cpu")
    a, b = AutoTokenizer.from_pretrained(by_id), AutoTokenizer.from_pretrained(by_name)
    assert a.get_vocab() == b.get_vocab() and a.chat_template == b.chat_template and a.chat_template
    assert (a.eos_token, a.bos_token, a.all_special_tokens) == (b.eos_token, b.bos_token, b.all_special_tokens)
    messages = [{"role": "user", "content": "hello"}]
    assert a.apply_chat_template(messages, add_generation_prompt=True) == b.apply_chat_template(messages, add_generation_prompt=True)
    strip = lambda path: {k: v for k, v in json.loads((path / "generation_config.json").read_text()).items() if k != "transformers_version"}  # noqa: E731
    assert strip(by_id) == strip(by_name) == {"bos_token_id": 1, "eos_token_id": [6, 2], "pad_token_id": 0}
    weights_a, weights_b = load_weights(by_id), load_weights(by_name)
    assert all(torch.equal(weights_a[n], weights_b[n]) for n in weights_a)
