"""Replies per second of sweep_ratios.py on a random Llama-shaped model (random weights never end a turn,
so every reply runs to --max_new_tokens: the worst case).

    python bench/sweep_speed.py [--hidden 1024] [--layers 12] [--prompts 16] [--max_new_tokens 32] [--batch_size 8] [--device cpu]
"""
import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(root: Path, hidden: int, layers: int, vocab: int = 32000) -> dict[str, Path]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    from tests.tiny_models import SPECIAL, TEMPLATE

    words = [*SPECIAL, *(f"w{i}" for i in range(vocab - len(SPECIAL)))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens(SPECIAL)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>", unk_token="<unk>", pad_token="<unk>",
                                        chat_template=TEMPLATE)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 11 // 4, num_hidden_layers=layers,
                         num_attention_heads=hidden // 64, num_key_value_heads=max(1, hidden // 256), max_position_embeddings=2048,
                         bos_token_id=1, eos_token_id=6, pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
    paths = {name: root / name for name in ("base", "chat", "cp")}
    for name, scale in (("base", 0.0), ("chat", 0.02), ("cp", 0.004)):
        state = {k: (v + scale * torch.randn_like(v)) for k, v in base.state_dict().items()}
        base_copy = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
        base_copy.load_state_dict(state)
        base_copy.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag, default in (("hidden", 1024), ("layers", 12), ("prompts", 16), ("max_new_tokens", 32), ("batch_size", 8)):
        parser.add_argument(f"--{flag}", type=int, default=default)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--root", default=str(ROOT / "bench" / "cache" / "sweep"))
    args = parser.parse_args()
    root = Path(args.root) / f"h{args.hidden}-l{args.layers}"
    if not (root / "cv" / "chat_vector.json").is_file():
        paths = build(root, args.hidden, args.layers)
        subprocess.run([sys.executable, str(ROOT / "extract_chat_vector.py"), paths["base"], paths["chat"], root / "cv", "--overwrite", "True"],
                       check=True)
    prompts = root / "prompts.txt"
    prompts.write_text("".join(f"w{i} w{i + 1} w{i + 2} w{i + 3} w{i + 4} w{i + 5}\n" for i in range(100, 100 + args.prompts)))
    out = root / f"sweep-{time.strftime('%H%M%S')}"
    started = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "sweep_ratios.py"), root / "cp", f"['{root / 'cv'}']", "--language", "en", "--ratios", "[0.5,1]",
                    "--prompts", prompts, "--out", out, "--max_new_tokens", str(args.max_new_tokens), "--batch_size", str(args.batch_size),
                    "--device", args.device], check=True)
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    params = sum(p.numel() for p in __import__("safetensors.torch", fromlist=["load_file"]).load_file(root / "cp" / "model.safetensors").values())
    print(json.dumps({"parameters": params, "device": args.device, "threads": torch.get_num_threads(), "batch_size": args.batch_size,
                      "max_new_tokens": args.max_new_tokens, "prompts_per_ratio": args.prompts, "wall_s": round(wall, 1),
                      "replies_per_s": [r["replies_per_s"] for r in summary["ratios"]],
                      "mean_tokens": [r["mean_tokens"] for r in summary["ratios"]]}, indent=1))


if __name__ == "__main__":
    main()
