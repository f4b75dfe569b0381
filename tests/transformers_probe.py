"""Run under another transformers (the make test venv with transformers 4.x): build models with its writer, or load outputs.

    python tests/transformers_probe.py build OUT          # the language-switch trio, saved by this transformers
    python tests/transformers_probe.py load DIR [DIR...]  # per directory, as JSON: what AutoTokenizer and AutoModelForCausalLM make of it

The same `probe` runs in the test process under transformers 5, so the two can be compared field by field.
"""
import json
import sys
from pathlib import Path

TEXTS = ["我們會幫你", "sure, i will help you with that.", "<|user|> 處理 <|end|>"]
CONVERSATION = [{"role": "system", "content": "幫你"}, {"role": "user", "content": "我們會幫你處理這件事"}]


def probe(model_dir: Path, generate: bool = True) -> dict:
    """Encodings, the chat template's rendering, the special tokens and, for a model, its greedy reply with the
    generation config's own stop ids."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    found = {"encode": [tokenizer(t)["input_ids"] for t in TEXTS], "prompt": prompt, "prompt_ids": ids,
             "tokens": {k: getattr(tokenizer, k) for k in ("bos_token", "eos_token", "pad_token")},
             "token_ids": {k: getattr(tokenizer, k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}}
    if generate:
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        with torch.no_grad():
            output = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long), max_new_tokens=24,
                                    do_sample=False)
        found["reply_ids"] = output[0, len(ids):].tolist()
        found["stop_ids"] = model.generation_config.eos_token_id
    return found


def main(argv: list[str]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    if argv[0] == "build":
        from tests.tiny_models import build_language_switch

        build_language_switch(Path(argv[1]))
        return
    import transformers

    results = {"transformers": transformers.__version__}
    for name in argv[1:]:
        path = Path(name)
        results[name] = probe(path, generate=(path / "config.json").is_file())
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1:])
