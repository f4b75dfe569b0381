"""The sweep's speed on a random Llama-shaped model: replies per second, seconds per weight swap against the swap's floor
(one read of the CP's and the vector's files), and what checking the replies costs against generating them.

    python bench/sweep_speed.py [--engine hf|vllm] [--hidden 1024] [--layers 12] [--max_new_tokens 32] [--batch_size 8]
                                [--ratios "[0.5,1]"] [--tensor_parallel_size 1] [--out bench/results/sweep-speed.json]

Random weights never end a turn, so every reply runs to --max_new_tokens: the worst case. The prompts are the built-in
English instruction set and the English safety set (167 replies a ratio), so checking covers every kind of check.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build(root: Path, hidden: int, layers: int, vocab: int = 32000) -> dict[str, Path]:
    """A random bf16 Llama trio (heads of 64, as vLLM's CPU kernels want) with a word-level tokenizer and a chat template."""
    import torch
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
        copy = AutoModelForCausalLM.from_config(config).to(torch.bfloat16)
        copy.load_state_dict({k: v + scale * torch.randn_like(v) for k, v in base.state_dict().items()})
        copy.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return paths


def read_once(paths: list[Path]) -> float:
    """Seconds to read the files' bytes into memory once, page cache warm: the floor of a swap, which needs every byte of
    the CP and the vector (a kernel copy into /dev/null reads nothing, so it is no floor here)."""
    buffer = bytearray(64 * 2**20)
    view = memoryview(buffer)
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb", buffering=0) as file:
            while file.readinto(view):
                pass
    return time.perf_counter() - started


def checking_cost(out: Path) -> dict:
    """Seconds to check every reply of the sweep (language, instructions, refusals), as its summary recomputes them."""
    from chatvector.evaluation.languages import LanguageDetector
    from chatvector.evaluation.sweep import SweepOptions, checks, prepare

    rows = [json.loads(line) for line in (out / "replies.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    started = time.perf_counter()
    plan = prepare(summary["model"], summary["chat_vectors"], SweepOptions(language="en", ratios=[[0.5]], out=str(out), safety_prompts="builtin"))
    loading = time.perf_counter() - started
    prompts = {p.text: p for p in plan.prompts}
    detector = LanguageDetector("en")
    checks("warm up", plan.prompts[0], plan, detector)
    started = time.perf_counter()
    for row in rows:
        checks(row["reply"], prompts[row["prompt"]], plan, detector)
    seconds = time.perf_counter() - started
    generating = sum(row["seconds"] for row in rows)
    return {"replies": len(rows), "check_s_per_reply": round(seconds / len(rows), 5), "generate_s_per_reply": round(generating / len(rows), 5),
            "checking_share_of_generation": round(2 * seconds / generating, 4),  # each reply is checked when made and again for the summary
            "loading_checkers_s": round(loading, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag, default in (("hidden", 1024), ("layers", 12), ("max_new_tokens", 32), ("batch_size", 8), ("tensor_parallel_size", 1)):
        parser.add_argument(f"--{flag}", type=int, default=default)
    parser.add_argument("--engine", default="hf", choices=["hf", "vllm"])
    parser.add_argument("--ratios", default="[0.5,1]")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--root", default=str(ROOT / "bench" / "cache" / "sweep"))
    parser.add_argument("--out", default=None, help="also write the result here (JSON)")
    args = parser.parse_args()
    root = Path(args.root) / f"h{args.hidden}-l{args.layers}"
    if not (root / "cv" / "chat_vector.json").is_file():
        paths = build(root, args.hidden, args.layers)
        subprocess.run([sys.executable, str(ROOT / "extract_chat_vector.py"), paths["base"], paths["chat"], root / "cv", "--overwrite", "True"],
                       check=True)
    out = root / f"sweep-{args.engine}-{time.strftime('%H%M%S')}"
    command = [sys.executable, str(ROOT / "sweep_ratios.py"), root / "cp", root / "cv", "--language", "en", "--prompts", "builtin",
               "--safety_prompts", "builtin", "--ratios", args.ratios, "--out", out, "--max_new_tokens", args.max_new_tokens,
               "--batch_size", args.batch_size, "--engine", args.engine]
    command += ["--tensor_parallel_size", args.tensor_parallel_size] if args.engine == "vllm" else ["--device", args.device]
    started = time.perf_counter()
    subprocess.run(list(map(str, command)), check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    summary = json.loads((out / "summary.json").read_text())
    inputs = [*sorted((root / "cp").glob("*.safetensors")), *sorted((root / "cv").glob("chat_vector*.safetensors"))]
    floors = [read_once(inputs) for _ in range(5)]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    result = {
        "date": time.strftime("%Y-%m-%d"), "commit": commit or None, "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}",
        "command": " ".join(map(str, sys.argv)), "engine": args.engine, "model_bytes": sum(p.stat().st_size for p in (root / "cp").glob("*.safetensors")),
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "wall_s": round(wall, 1),
        "replies_per_s": [r["replies_per_s"] for r in summary["ratios"]],
        "swap": [r["swap"] for r in summary["ratios"]],
        "swap_floor_s (CP and vector read into memory once, warm; median of 5)": round(statistics.median(floors), 3),
        "swap_floor_spread_s": [round(min(floors), 3), round(max(floors), 3)],
        "checking": checking_cost(out),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
