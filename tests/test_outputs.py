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


def test_config_is_the_cps_and_the_card_records_how_the_model_was_made(trios, merged):
    from huggingface_hub import ModelCard

    assert json.loads((merged["llama"] / "config.json").read_text()) == json.loads((trios["llama"]["cp"] / "config.json").read_text())
    card = ModelCard.load(merged["llama"] / "README.md")
    assert card.data.base_model == [str(trios["llama"][r]) for r in ("cp", "base", "chat")]
    assert "chat-vector" in card.data.tags
    assert "| 0.5 |" in card.text and "skip_embed: `False`" in card.text


def test_vector_directory_is_self_contained(trios, vectors):
    files = {p.name for p in vectors["llama"].iterdir()}
    assert {"chat_vector.safetensors", "chat_embeddings.safetensors", "chat_vector.json", "README.md",
            "tokenizer.json", "tokenizer_config.json", "generation_config.json"} <= files
    meta = json.loads((vectors["llama"] / "chat_vector.json").read_text())
    assert meta["format_version"] == 1 and meta["architectures"] == ["LlamaForCausalLM"] and meta["dtype"] == "bfloat16"
    assert meta["embeddings"] == {"input_embedding": "model.embed_tokens.weight", "output_embedding": "lm_head.weight"}
    assert meta["config"] == json.loads((trios["llama"]["chat"] / "config.json").read_text())
    assert AutoTokenizer.from_pretrained(vectors["llama"]).chat_template == AutoTokenizer.from_pretrained(trios["llama"]["chat"]).chat_template
