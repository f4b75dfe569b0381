"""Tiny base/chat/CP model trios with a trained tokenizer and chat template: for the tests and `make demo`.

    python -m tests.tiny_models OUT_DIR     # writes OUT_DIR/{base,chat,cp} (Llama architecture)
"""
import sys
from pathlib import Path

import torch

TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "hello how are you today i am fine thank you",
    "a chat vector adds instruction following to a model",
    "continual pre-training teaches a model a new language",
    "weights are added and subtracted one tensor at a time",
    "你好 今天 天氣 很好 我們 去 公園",
]
SPECIAL = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def make_tokenizer(chat_template: str | None = TEMPLATE, eos: str = "<|end|>"):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=120, special_tokens=SPECIAL, show_progress=False))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token=eos, unk_token="<unk>",
                                   pad_token="<unk>", chat_template=chat_template)


def make_config(arch: str, vocab_size: int = 128):
    from transformers import GPT2Config, GPTNeoXConfig, LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=6, pad_token_id=0)
    if arch == "llama":
        return LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, **common)
    if arch == "qwen2":
        return Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True, **common)
    if arch == "gpt2":
        return GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)
    if arch == "gpt_neox":
        return GPTNeoXConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             max_position_embeddings=128, tie_word_embeddings=False, **common)
    raise ValueError(arch)


def save_model(config, state: dict, path: Path, dtype: torch.dtype, tokenizer, legacy_bin: bool = False, **save_kwargs) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(state, strict=False)
    model.to(dtype).save_pretrained(path, **save_kwargs)
    tokenizer.save_pretrained(path)
    if legacy_bin:  # transformers 5 writes only safetensors; old checkpoints are pytorch_model.bin pickles
        file = Path(path) / "model.safetensors"
        torch.save(load_file(file), Path(path) / "pytorch_model.bin")
        file.unlink()


def build_trio(root: Path, arch: str = "llama", dtype: torch.dtype = torch.float32, seed: int = 0,
               chat_tokenizer=None, legacy_bin: bool = False, **save_kwargs) -> dict[str, Path]:
    """base (random), chat = base + delta, cp = base + another delta; returns their directories."""
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(seed)
    config = make_config(arch)
    base = AutoModelForCausalLM.from_config(config).state_dict()
    generator = torch.Generator().manual_seed(seed + 1)
    shifted = lambda scale: {k: v + scale * torch.randn(v.shape, generator=generator) if v.is_floating_point() else v  # noqa: E731
                             for k, v in base.items()}
    paths = {name: Path(root) / name for name in ("base", "chat", "cp")}
    plain = make_tokenizer(chat_template=None, eos="</s>")
    save_model(config, base, paths["base"], dtype, plain, legacy_bin, **save_kwargs)
    save_model(config, shifted(0.02), paths["chat"], dtype, chat_tokenizer or make_tokenizer(), legacy_bin, **save_kwargs)
    # chat models end turns on several ids (Llama-3: <|eot_id|> and <|end_of_text|>)
    GenerationConfig(bos_token_id=1, eos_token_id=[6, 2], pad_token_id=0).save_pretrained(paths["chat"])
    save_model(config, shifted(0.004), paths["cp"], dtype, plain, legacy_bin, **save_kwargs)  # CP: close to its base (lineage)
    return paths


if __name__ == "__main__":
    from transformers.utils import logging

    logging.disable_progress_bar()
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo_models")
    for name, path in build_trio(out, "llama", torch.bfloat16).items():
        print(f"{name}: {path}")
