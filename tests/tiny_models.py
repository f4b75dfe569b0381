"""Tiny base/chat/CP model trios with a trained tokenizer and chat template, and engineered switch models: tests and `make demo`.

    python -m tests.tiny_models OUT_DIR     # writes OUT_DIR/{base,chat,cp} (Llama architecture), OUT_DIR/switch, OUT_DIR/instruction_switch
"""
import sys
from dataclasses import dataclass
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


# The language-switch trio: a model whose greedy reply is a fixed Chinese or English sentence, chosen by
# its output head at the generation prompt, and whose turn-taking is set by the head at the sentence end.
# One layer of uniform attention carries the mean "lean" of the prompt's tokens, so that the ratio at
# which a reply switches language differs from prompt to prompt.
SWITCH_ZH = list("我們會幫你處理這件事。")  # Traditional script
SWITCH_EN = ["▁sure", ",", "▁i", "▁will", "▁help", "▁you", "▁with", "▁that", "."]  # ▁: a space before the word
SWITCH_HIDDEN, SWITCH_VOCAB = 128, 32  # two heads of 64: what vLLM's CPU attention kernels run, at tensor parallel 1 and 2
LEAN = {"<unk>": 0.3, "<s>": -1.0, "<|user|>": -1.0, "<|assistant|>": -1.0, "<|system|>": -1.0, "<|end|>": -1.0}


@dataclass(frozen=True)
class Design:
    """What an engineered switch model says: its Chinese and English replies, and the edges its chat model adds."""
    zh: tuple[str, ...] = tuple(SWITCH_ZH)
    en: tuple[str, ...] = tuple(SWITCH_EN)
    chat_edges: tuple[tuple[str, str, float], ...] = ()  # (from, to, units) in the chat model's head: its own way through a reply

    @property
    def ids(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(dict.fromkeys([*SPECIAL, *self.zh, *self.en]))}


LANGUAGE_SWITCH = Design()
# The instruction switch: the CP answers "我們會幫你，處理這件事。" (a comma); its chat model answers without one, in
# Chinese or in English ("sure i will help you with that."). So CP + r·CV obeys "no commas" once 4r > 3 - 3r
# (r > 3/7), ends its turn once r > 0.4, and answers in English from r = 0.62-0.85 on, as the language switch does.
INSTRUCTION_SWITCH = Design(zh=tuple("我們會幫你，處理這件事。"), en=("▁sure", "▁i", "▁will", "▁help", "▁you", "▁with", "▁that", "."),
                            chat_edges=(("你", "，", -3.0), ("你", "處", 4.0)))
COMMA_FROM = 3 / 7


def make_switch_tokenizer(chat_template: str | None = TEMPLATE, eos: str = "<|end|>", design: Design = LANGUAGE_SWITCH,
                          ids: dict[str, int] | None = None):
    """Word-level: each CJK character is a token, and so are the English reply's words; everything else is <unk>."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(ids or design.ids, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"[\p{Han}\p{Hangul}\p{Hiragana}\p{Katakana}]|[，。！？、,.!?]"), behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens(SPECIAL)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token=eos, unk_token="<unk>",
                                   pad_token="<unk>", chat_template=chat_template)


def _even_attention(generator: torch.Generator, features: dict[int, dict[int, float]]):
    """What every switch model shares: identity embeddings, and one layer whose attention averages the prompt evenly
    (q = k = 0), carrying `features` ({dimension: {token id: value}}) into the residual stream as prompt means. Returns the
    weights and the noise they are made with (no exact zeros: the lineage check needs scale)."""
    hidden = SWITCH_HIDDEN
    noise = lambda *shape: 1e-3 * torch.randn(*shape, generator=generator)  # noqa: E731
    w = {
        "model.embed_tokens.weight": torch.eye(SWITCH_VOCAB, hidden) + noise(SWITCH_VOCAB, hidden),
        "model.norm.weight": torch.ones(hidden),
        "model.layers.0.input_layernorm.weight": torch.ones(hidden),
        "model.layers.0.post_attention_layernorm.weight": torch.ones(hidden),
    }
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        w[f"model.layers.0.self_attn.{name}.weight"] = noise(hidden, hidden)
    for name, shape in (("gate_proj", (64, hidden)), ("up_proj", (64, hidden)), ("down_proj", (hidden, 64))):
        w[f"model.layers.0.mlp.{name}.weight"] = noise(*shape)
    for dim, values in features.items():  # the value carries each token's feature into one dimension
        for token_id, value in values.items():
            w["model.layers.0.self_attn.v_proj.weight"][dim, token_id] = value / hidden ** 0.5
        w["model.layers.0.self_attn.o_proj.weight"][dim, dim] = 1.0
    return w, noise


def switch_weights(kind: str, generator: torch.Generator, design: Design = LANGUAGE_SWITCH) -> dict[str, torch.Tensor]:
    """base, chat or cp weights of a switch model (see above); logits are in units of the head's scale."""
    hidden, lean_dim = SWITCH_HIDDEN, SWITCH_HIDDEN - 1
    ids = design.ids
    w, noise = _even_attention(generator, {lean_dim: {ids[token]: lean for token, lean in LEAN.items()}})
    units = torch.zeros(SWITCH_VOCAB, hidden)
    for chain in (design.zh, design.en):
        for a, b in zip(chain, chain[1:]):
            units[ids[b], ids[a]] = 3.0
        units[ids[chain[0]], ids[chain[-1]]] = 1.0  # after the sentence: ramble on with it again ...
        units[ids["<|end|>"], ids[chain[-1]]] = {"base": -1.0, "cp": -1.0, "chat": 4.0}[kind]  # ... or end the turn
    if kind == "chat":
        for a, b, value in design.chat_edges:
            units[ids[b], ids[a]] += value
    assistant = ids["<|assistant|>"]
    units[ids[design.en[0]], assistant] = {"base": 0.6, "cp": 0.6, "chat": 1.6}[kind]  # the reply's first word
    units[ids[design.zh[0]], assistant] = {"base": 0.0, "cp": 1.4, "chat": 0.0}[kind]
    units[ids[design.en[0]], lean_dim] = 1.0  # long prompts lean to English
    w["lm_head.weight"] = 4.0 * units / hidden ** 0.5 + noise(SWITCH_VOCAB, hidden)
    return w


def build_language_switch(root: Path, seed: int = 0, design: Design = LANGUAGE_SWITCH) -> dict[str, Path]:
    """base / chat / cp of a switch model (float32): CP + r·(chat − base) answers in Traditional Chinese for small r
    and switches to English as r grows; it ends its turn once r > 0.4."""
    return _build_switch(root, seed, lambda kind, generator: switch_weights(kind, generator, design),
                         lambda **options: make_switch_tokenizer(design=design, **options))


def _build_switch(root: Path, seed: int, weights, tokenizer) -> dict[str, Path]:
    """base / chat / cp of a switch model in float32 from `weights(kind, generator)`: the same noise in all three, so that only
    the designed entries differ, and a little training of their own in chat and cp; the chat model ends turns on 6 and 2."""
    from transformers import GenerationConfig, LlamaConfig

    config = LlamaConfig(vocab_size=SWITCH_VOCAB, hidden_size=SWITCH_HIDDEN, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    generator = torch.Generator().manual_seed(seed + 1)
    paths = {name: Path(root) / name for name in ("base", "chat", "cp")}
    plain = tokenizer(chat_template=None, eos="</s>")
    for name in ("base", "chat", "cp"):
        state = weights(name, torch.Generator().manual_seed(seed))
        if name != "base":
            state = {k: v + 2e-4 * torch.randn(v.shape, generator=generator) for k, v in state.items()}
        save_model(config, state, paths[name], torch.float32, tokenizer() if name == "chat" else plain)
    GenerationConfig(bos_token_id=1, eos_token_id=[6, 2], pad_token_id=0).save_pretrained(paths["chat"])
    return paths


def build_instruction_switch(root: Path, seed: int = 0) -> dict[str, Path]:
    """The instruction switch (INSTRUCTION_SWITCH above): "no commas" obeyed from r > 3/7, and its prompt set: the built-in
    zh-Hant prompts (English from about r = 0.6) and their first 20 characters (from about 0.75), each asking for no commas."""
    import json

    from chatvector.evaluation.prompts import load_prompts

    paths = build_language_switch(root, seed, INSTRUCTION_SWITCH)
    texts = [p.text for p in load_prompts("builtin", "zh-Hant")]
    rows = [{"key": i, "prompt": text, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
            for i, text in enumerate([*texts, *dict.fromkeys(t[:20] for t in texts)])]
    paths["prompts"] = Path(root) / "no_comma.jsonl"
    paths["prompts"].write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return paths


# The safety switch: a request is harmful when its tokens carry the harm feature (毒), averaged over the prompt as the lean is.
# Harmful requests get "好的這是步驟。" (complied with, in Chinese) below r = 1 / (3·harm + 1.5), "抱歉我不能幫你！" (refused, in
# Chinese) up to r = 0.6, and "sorry i cannot help with that." above it; benign ones are answered until r = 0.625, then refused in
# English too. Every reply ends its turn once r > 0.4.
SAFETY_COMPLY, SAFETY_REFUSE = tuple("好的這是步驟。"), tuple("抱歉我不能幫你！")
SAFETY_REFUSE_EN = ("▁sorry", "▁i", "▁cannot", "▁help", "▁with", "▁that", ".")
SAFETY_IDS = {token: i for i, token in enumerate([*SPECIAL, *SAFETY_COMPLY, *SAFETY_REFUSE, *SAFETY_REFUSE_EN, "毒"])}
HARM = {"毒": 1.0}
FIRST_WORDS = {  # the head at the generation prompt, per model: (units from the prompt, units per unit of harm)
    "好": {"base": (1.5, 0.0), "cp": (1.5, 0.0), "chat": (0.0, 0.0)},
    "抱": {"base": (0.5, 0.0), "cp": (0.5, 0.0), "chat": (0.5, 3.0)},
    "▁sorry": {"base": (-1.0, 0.0), "cp": (-1.0, 0.0), "chat": (1.5, 3.0)},
}


def safety_weights(kind: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """base, chat or cp weights of the safety switch (see above)."""
    hidden, harm_dim = SWITCH_HIDDEN, SWITCH_HIDDEN - 2
    ids = SAFETY_IDS
    w, noise = _even_attention(generator, {harm_dim: {ids[token]: harm for token, harm in HARM.items()}})
    units = torch.zeros(SWITCH_VOCAB, hidden)
    for chain in (SAFETY_COMPLY, SAFETY_REFUSE, SAFETY_REFUSE_EN):
        for a, b in zip(chain, chain[1:]):
            units[ids[b], ids[a]] = 3.0
        units[ids[chain[0]], ids[chain[-1]]] = 1.0  # after the sentence: say it again ...
        units[ids["<|end|>"], ids[chain[-1]]] = {"base": -1.0, "cp": -1.0, "chat": 4.0}[kind]  # ... or end the turn
    for token, by_kind in FIRST_WORDS.items():
        prompt, per_harm = by_kind[kind]
        units[ids[token], ids["<|assistant|>"]] = prompt
        units[ids[token], harm_dim] = per_harm
    w["lm_head.weight"] = 4.0 * units / hidden ** 0.5 + noise(SWITCH_VOCAB, hidden)
    return w


def make_safety_tokenizer(chat_template: str | None = TEMPLATE, eos: str = "<|end|>"):
    """The switch models' word-level tokenizer over the safety switch's vocabulary."""
    return make_switch_tokenizer(chat_template, eos, ids=SAFETY_IDS)


def build_safety_switch(root: Path, seed: int = 0) -> dict[str, Path]:
    """base / chat / cp of the safety switch (float32)."""
    return _build_switch(root, seed, safety_weights, make_safety_tokenizer)


if __name__ == "__main__":
    from transformers.utils import logging

    logging.disable_progress_bar()
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo_models")
    for name, path in build_trio(out, "llama", torch.bfloat16).items():
        print(f"{name}: {path}")
    for name, path in build_language_switch(out / "switch").items():
        print(f"switch {name}: {path}")
    for name, path in build_instruction_switch(out / "instruction_switch").items():
        print(f"instruction switch {name}: {path}")
