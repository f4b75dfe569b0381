"""--align_vocab and special tokens by name: extended, permuted and padded vocabularies, added chat tokens."""
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from chatvector import ChatVectorError, add, extract
from chatvector.engines.hf import load_chat_model
from chatvector.merge.vocab import align_vocab, template_tokens
from tests.conftest import assert_within_ulp, load_weights, run_script

EMBEDDINGS = ("model.embed_tokens.weight", "lm_head.weight")
NEW_WORDS = ["天氣很好", "公園裡", "我們去"]


def _derive(source, target, edit_rows, edit_tokenizer):
    """A copy of a model with its embedding rows and tokenizer changed (what continual pre-training does)."""
    shutil.copytree(source, target)
    state = load_weights(target)
    for name in EMBEDDINGS:
        state[name] = edit_rows(state[name])
    save_file(state, target / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "vocab_size": state[EMBEDDINGS[0]].shape[0]}))
    edit_tokenizer(target)
    return target


def _add_words(directory):
    tokenizer = AutoTokenizer.from_pretrained(directory)
    tokenizer.add_tokens(NEW_WORDS)
    tokenizer.save_pretrained(directory)


def _permute_tokenizer(perm):
    def edit(directory):
        data = json.loads((directory / "tokenizer.json").read_text())
        data["model"]["vocab"] = {token: perm[i] for token, i in data["model"]["vocab"].items()}
        for entry in data["added_tokens"]:
            entry["id"] = perm[entry["id"]]
        (directory / "tokenizer.json").write_text(json.dumps(data))
    return edit


def _permute_rows(perm):
    def edit(rows):
        out = rows.clone()
        out[torch.tensor(perm)] = rows[: len(perm)]
        return out
    return edit


@pytest.fixture(scope="module")
def cps(trios, tmp_path_factory):
    root, cp = tmp_path_factory.mktemp("vocab"), trios["llama"]["cp"]
    generator = torch.Generator().manual_seed(7)
    perm = torch.randperm(120, generator=generator).tolist()
    grow = lambda n: lambda rows: torch.cat([rows, (0.02 * torch.randn(n, rows.shape[1], generator=generator)).to(rows.dtype)])  # noqa: E731
    return {
        "extended": _derive(cp, root / "extended", grow(8), _add_words),  # Chinese-LLaMA: new words, more rows
        "permuted": _derive(cp, root / "permuted", _permute_rows(perm), _permute_tokenizer(perm)),
        "padded": _derive(cp, root / "padded", grow(16), lambda d: None),  # 144 rows for 120 tokens
        "perm": perm,
    }


def _expected_rows(cp_dir, vector_dir, ratio):
    """Ground truth by token string, in float64: CP row + ratio * delta of the same token, else the CP row."""
    cp_tok, chat_tok = AutoTokenizer.from_pretrained(cp_dir), AutoTokenizer.from_pretrained(vector_dir)
    cp, vector = load_weights(cp_dir), load_weights(vector_dir, "chat_vector")
    chat_vocab = chat_tok.get_vocab()
    expected = {}
    for name in EMBEDDINGS:
        truth, delta_rows = cp[name].double().clone(), vector[name].shape[0]
        cp_names = {i: t for t, i in cp_tok.get_vocab().items()}
        for row in range(cp[name].shape[0]):
            token = cp_names.get(row)
            chat_row = chat_vocab.get(token) if token is not None else (row if row >= len(chat_tok) else None)
            if chat_row is not None and chat_row < delta_rows:
                truth[row] += ratio * vector[name][chat_row].double()
        expected[name] = truth
    return expected, cp


@pytest.mark.parametrize("case", ["extended", "permuted", "padded"])
def test_aligned_rows_match_ground_truth_by_token(case, cps, vectors, tmp_path):
    out = add(str(cps[case]), [str(vectors["llama"])], str(tmp_path / "o"), ratios=[0.5], align_vocab=True, device="cpu")
    expected, cp = _expected_rows(cps[case], vectors["llama"], 0.5)
    merged = load_weights(out)
    for name in EMBEDDINGS:
        assert merged[name].shape == cp[name].shape
        assert_within_ulp(merged[name], expected[name], 1, name, magnitude=cp[name].double().abs() + expected[name].sub(cp[name].double()).abs())
    if case == "extended":  # rows of the new words stay exactly the CP's
        new_ids = AutoTokenizer.from_pretrained(cps[case]).convert_tokens_to_ids(NEW_WORDS)
        assert all(torch.equal(merged[n][new_ids], cp[n][new_ids]) for n in EMBEDDINGS)


def test_alignment_counts_shared_cp_only_chat_only_and_padding(cps, vectors):
    chat_tok = AutoTokenizer.from_pretrained(vectors["llama"])
    extended = align_vocab(AutoTokenizer.from_pretrained(cps["extended"]), chat_tok, 136, 128)
    assert (extended.shared, extended.cp_only, extended.chat_only, extended.padding) == (120, 3, 0, 5)
    smaller = align_vocab(chat_tok, chat_tok, 100, 128)  # a CP with fewer rows than the chat model
    assert (smaller.shared, smaller.chat_only, smaller.padding) == (100, 20, 0) and smaller.rows.tolist() == list(range(100))
    permuted = align_vocab(AutoTokenizer.from_pretrained(cps["permuted"]), chat_tok, 128, 128)
    assert (permuted.shared, permuted.padding) == (120, 8)
    assert permuted.rows[torch.tensor(cps["perm"])].tolist() == list(range(120))


def test_the_permuted_model_loads_generates_and_ends_turns_on_its_own_ids(cps, vectors, tmp_path):
    out = add(str(cps["permuted"]), [str(vectors["llama"])], str(tmp_path / "o"), align_vocab=True, device="cpu")
    perm = cps["perm"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.eos_token == "<|end|>" and tokenizer.eos_token_id == perm[6]
    assert GenerationConfig.from_pretrained(out).eos_token_id == [perm[6], perm[2]]
    model = AutoModelForCausalLM.from_pretrained(out)
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": "hello"}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    assert model.generate(**inputs, max_new_tokens=3, do_sample=False).shape[-1] > inputs["input_ids"].shape[-1]
    assert "0 chat-only" in (out / "README.md").read_text()


def test_without_align_vocab_an_extended_vocabulary_names_both_ways_out(cps, vectors, tmp_path):
    result = run_script("add_chat_vector.py", cps["extended"], vectors["llama"], tmp_path / "o")
    assert result.returncode == 1 and "--align_vocab True" in result.stderr and "--skip_embed True" in result.stderr
    assert "[136, 32] in the CP model but [128, 32]" in result.stderr
    ok = run_script("add_chat_vector.py", cps["extended"], vectors["llama"], tmp_path / "o", "--align_vocab", "True")
    assert ok.returncode == 0, ok.stderr
    assert "align_vocab" in ok.stderr and "120 shared, 3 CP-only, 0 chat-only, 5 padding rows" in ok.stderr


def test_special_tokens_by_string_equal_by_id_and_auto_takes_the_template_tokens(cps, vectors, tmp_path):
    perm, cp = cps["perm"], cps["permuted"]
    by_string = add(str(cp), [str(vectors["llama"])], str(tmp_path / "s"), align_vocab=True, device="cpu",
                    special_tokens_map={"<|end|>": "<|end|>", "<|assistant|>": 4})
    by_id = add(str(cp), [str(vectors["llama"])], str(tmp_path / "i"), align_vocab=True, device="cpu",
                special_tokens_map={perm[6]: 6, perm[4]: 4})
    a, b, chat = load_weights(by_string), load_weights(by_id), load_weights(vectors["llama"], "chat_embeddings")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert all(torch.equal(a[n][perm[6]], chat[n][6]) for n in EMBEDDINGS)
    assert template_tokens(AutoTokenizer.from_pretrained(vectors["llama"])) == ["<s>", "<|system|>", "<|end|>", "<|user|>", "<|assistant|>"]
    auto = load_weights(add(str(cp), [str(vectors["llama"])], str(tmp_path / "a"), align_vocab=True, device="cpu", special_tokens_map="auto"))
    for token in ("<s>", "<|system|>", "<|end|>", "<|user|>", "<|assistant|>"):
        chat_id = AutoTokenizer.from_pretrained(vectors["llama"]).convert_tokens_to_ids(token)
        assert all(torch.equal(auto[n][perm[chat_id]], chat[n][chat_id]) for n in EMBEDDINGS), token


def test_a_chat_model_with_added_tokens_extracts_and_a_template_token_the_cp_lacks_is_named(trios, tmp_path):
    llama = trios["llama"]
    grow = lambda rows: torch.cat([rows, 0.1 * torch.ones(2, rows.shape[1], dtype=rows.dtype)])  # noqa: E731

    def add_chat_token(directory):
        tokenizer = AutoTokenizer.from_pretrained(directory)
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>"]})
        tokenizer.chat_template = "{% for m in messages %}<|im_start|>{{ m['content'] }}<|end|>{% endfor %}"
        tokenizer.save_pretrained(directory)

    chat = _derive(llama["chat"], tmp_path / "chat", grow, add_chat_token)  # 130 rows: <|im_start|> is id 120
    vector = extract(str(llama["base"]), str(chat), str(tmp_path / "cv"), device="cpu")
    assert load_weights(vector, "chat_vector")[EMBEDDINGS[0]].shape[0] == 128  # the rows base and chat share
    assert load_weights(vector, "chat_embeddings")[EMBEDDINGS[0]].shape[0] == 130  # the chat model's own rows, all
    with pytest.raises(ChatVectorError, match="the chat template needs '<|im_start|>', which the CP tokenizer lacks"):
        add(str(llama["cp"]), [str(vector)], str(tmp_path / "o"), align_vocab=True, special_tokens_map="auto", device="cpu")
    with pytest.raises(ChatVectorError, match="the CP tokenizer has no token '<|im_start|>'"):
        add(str(llama["cp"]), [str(vector)], str(tmp_path / "o"), align_vocab=True, special_tokens_map={"<|im_start|>": "<|im_start|>"}, device="cpu")
    assert not (tmp_path / "o").exists()
    out = add(str(llama["cp"]), [str(vector)], str(tmp_path / "o"), align_vocab=True, special_tokens_map={"<|end|>": "<|im_start|>"}, device="cpu")
    assert torch.equal(load_weights(out)[EMBEDDINGS[0]][6], load_weights(chat)[EMBEDDINGS[0]][120])


def test_untrained_template_rows_warn_unless_an_option_replaces_them(trios, vectors, tmp_path):
    llama = trios["llama"]
    base = load_weights(llama["base"])

    cp = _derive(llama["cp"], tmp_path / "cp", lambda r: r, lambda d: None)
    state = load_weights(cp)
    for name in EMBEDDINGS:  # the CP never trained <|assistant|> (4) nor <|end|> (6): their rows are still the base model's
        state[name][[4, 6]] = base[name][[4, 6]]
    save_file(state, cp / "model.safetensors", metadata={"format": "pt"})
    warned = run_script("add_chat_vector.py", cp, vectors["llama"], tmp_path / "a", "--ratio", "0.5")
    warnings = [line for line in warned.stderr.splitlines() if line.startswith("warning:")]
    assert warned.returncode == 0 and len(warnings) == 1, warned.stderr  # one line for all the tokens
    assert "uses '<|end|>', '<|assistant|>', whose CP rows look untrained" in warnings[0] or \
        "uses '<|assistant|>', '<|end|>', whose CP rows look untrained" in warnings[0], warnings[0]
    assert "--special_tokens_map auto" in warnings[0]
    quiet = run_script("add_chat_vector.py", cp, vectors["llama"], tmp_path / "b", "--ratio", "0.5", "--special_tokens_map", "auto")
    assert quiet.returncode == 0 and "look untrained" not in quiet.stderr
    mapped = "'<s>', '<|system|>', '<|end|>', '<|user|>', '<|assistant|>'"
    assert f"special_tokens_map auto: the chat model's rows for {mapped}" in quiet.stderr  # reported ...
    assert "special_tokens_map: `auto: {'<s>': '<s>', '<|system|>': '<|system|>'," in (tmp_path / "b" / "README.md").read_text()  # ... and recorded
    trained = run_script("add_chat_vector.py", llama["cp"], vectors["llama"], tmp_path / "c", "--ratio", "0.5")
    assert trained.returncode == 0 and "look untrained" not in trained.stderr


def test_chat_align_vocab_gives_the_logits_of_the_checkpoint_add_writes(cps, vectors, tmp_path):
    out = add(str(cps["permuted"]), [str(vectors["llama"])], str(tmp_path / "o"), ratios=[0.5], align_vocab=True,
              special_tokens_map="auto", device="cpu")
    model, tokenizer = load_chat_model(str(cps["permuted"]), "cpu", "auto", [str(vectors["llama"])], [0.5], False, "auto", True)
    ids = torch.tensor([[1, 3, 20, 34, 50, 6, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, AutoModelForCausalLM.from_pretrained(out)(ids).logits)
    assert cps["perm"][6] in model.generation_config.eos_token_id  # <|end|> at the CP's own id


LLAMA3 = ("{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + "
          "'<|eot_id|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
CHATML = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
          "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.mark.parametrize("template", [None, LLAMA3, CHATML], ids=["phi3-like", "llama3-like", "chatml-refusing-system"])
def test_template_tokens_from_the_files_equal_transformers_rendering(template, tmp_path):
    from transformers import AutoTokenizer

    from chatvector.io.tokenizer_files import TokenizerFiles
    from chatvector.merge.vocab import template_tokens
    from tests.tiny_models import TEMPLATE, make_tokenizer

    tokenizer = make_tokenizer(chat_template=template or TEMPLATE)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_start|>",
                                                                "<|im_end|>"]})
    tokenizer.save_pretrained(tmp_path)
    expected = template_tokens(AutoTokenizer.from_pretrained(tmp_path))
    assert template_tokens(TokenizerFiles(tmp_path)) == expected and len(expected) >= 3
