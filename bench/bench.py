"""Benchmark extract and add against a naive in-memory baseline and the I/O floor: time, peak RSS, peak anonymous memory.

    python bench/bench.py [--size default|small|8b-embed] [--reps 3] [--device cpu] [--naive True]
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from chatvector.writer import SafetensorsWriter, TensorSpec, plan_shards, write_index  # noqa: E402

SIZES = {  # Llama shapes: TinyLlama-1.1B; a small one for the smoke test; Llama-3-8B's embedding with few layers
    "default": dict(hidden=2048, intermediate=5632, layers=22, heads=32, kv_heads=4, vocab=32000),
    "small": dict(hidden=256, intermediate=512, layers=2, heads=4, kv_heads=2, vocab=2048),
    "8b-embed": dict(hidden=4096, intermediate=14336, layers=1, heads=32, kv_heads=8, vocab=128256),
}


def llama_specs(hidden, intermediate, layers, heads, kv_heads, vocab) -> list[TensorSpec]:
    kv = hidden // heads * kv_heads
    shapes = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", (hidden,)), (p + "self_attn.q_proj.weight", (hidden, hidden)),
                   (p + "self_attn.k_proj.weight", (kv, hidden)), (p + "self_attn.v_proj.weight", (kv, hidden)),
                   (p + "self_attn.o_proj.weight", (hidden, hidden)), (p + "post_attention_layernorm.weight", (hidden,)),
                   (p + "mlp.gate_proj.weight", (intermediate, hidden)), (p + "mlp.up_proj.weight", (intermediate, hidden)),
                   (p + "mlp.down_proj.weight", (hidden, intermediate))]
    shapes += [("model.norm.weight", (hidden,)), ("lm_head.weight", (vocab, hidden))]
    return [TensorSpec(name, torch.bfloat16, shape) for name, shape in shapes]


def make_model(path: Path, shape: dict, seed: int) -> None:
    """A random bf16 Llama checkpoint in 1 GB shards, written tensor by tensor (never whole in memory)."""
    from tests.tiny_models import make_tokenizer
    from transformers import LlamaConfig

    path.mkdir(parents=True)
    specs = llama_specs(**shape)
    shards = plan_shards(specs, 10**9, "model")
    generator = torch.Generator().manual_seed(seed)
    for file, group in shards:
        writer = SafetensorsWriter(path / file, group)
        for spec in group:
            for rows in torch.arange(spec.shape[0]).split(max(1, 2**23 // max(1, spec.nbytes // 2 // spec.shape[0]))):
                writer.write(spec.name, (0.02 * torch.randn((len(rows), *spec.shape[1:]), generator=generator)).to(torch.bfloat16))
        writer.close()
    write_index(path, "model", shards)
    LlamaConfig(hidden_size=shape["hidden"], intermediate_size=shape["intermediate"], num_hidden_layers=shape["layers"],
                num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"], vocab_size=shape["vocab"],
                tie_word_embeddings=False, dtype="bfloat16").save_pretrained(path)
    make_tokenizer().save_pretrained(path)


def trio(size: str, cache: Path) -> dict[str, Path]:
    root = cache / size
    paths = {role: root / role for role in ("base", "chat", "cp")}
    for seed, (role, path) in enumerate(paths.items()):
        if not (path / "config.json").is_file():
            shutil.rmtree(path, ignore_errors=True)
            print(f"generating {path} ...", file=sys.stderr)
            make_model(path, SIZES[size], seed)
    return paths


def measure(command: list[str]) -> dict:
    """Wall time, peak RSS and peak anonymous RSS of one process, read from /proc every 5 ms.

    VmHWM is the kernel's own high-water mark of the process after exec (wait4's ru_maxrss would also
    count the forked copy of this benchmark before exec); RssAnon has no high-water mark, so it is sampled.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak, done = {"VmHWM:": 0, "RssAnon:": 0}, threading.Event()

    def sample():
        while not done.is_set():
            try:
                for line in open(f"/proc/{process.pid}/status"):
                    key = line.split(maxsplit=1)[0]
                    if key in peak:
                        peak[key] = max(peak[key], int(line.split()[1]) * 1024)
            except (FileNotFoundError, ProcessLookupError):
                pass
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, _ = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if status != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{process.stderr.read().decode()}")
    return {"wall_s": wall, "peak_rss_bytes": peak["VmHWM:"], "peak_anon_bytes": peak["RssAnon:"]}


def dir_files(path: Path, pattern: str = "*.safetensors") -> list[str]:
    return [str(p) for p in sorted(path.glob(pattern))]


def main(size: str = "default", reps: int = 3, device: str = "cpu", naive: bool = True, cache: str = "bench/cache",
         results: str = "bench/results") -> None:
    cache, out = ROOT / cache, ROOT / cache / "out"
    paths = trio(size, cache)
    py = sys.executable
    vector_dir = out / "cv"
    model_bytes = sum(Path(f).stat().st_size for f in dir_files(paths["chat"]))
    embedding_bytes = sum(s.nbytes for s in llama_specs(**SIZES[size]) if s.name in ("model.embed_tokens.weight", "lm_head.weight"))
    extract_bytes = model_bytes + embedding_bytes  # extract writes the vector and the chat model's embeddings
    jobs = {
        "extract": [py, str(ROOT / "extract_chat_vector.py"), paths["base"], paths["chat"], vector_dir, "--overwrite", "True", "--device", device],
        "extract floor": [py, str(ROOT / "bench/floor.py"), out / "floor", extract_bytes, *dir_files(paths["base"]), *dir_files(paths["chat"])],
        "add": [py, str(ROOT / "add_chat_vector.py"), paths["cp"], vector_dir, out / "model", "--ratio", "0.5", "--overwrite", "True", "--device", device],
        "add floor": [py, str(ROOT / "bench/floor.py"), out / "floor", model_bytes, *dir_files(paths["cp"]), *dir_files(paths["chat"])],
    }
    if naive:
        jobs["extract naive"] = [py, str(ROOT / "bench/naive.py"), "extract", paths["base"], paths["chat"], out / "naive_cv.pt"]
        jobs["add naive"] = [py, str(ROOT / "bench/naive.py"), "add", paths["cp"], out / "naive_cv.pt", out / "naive_model", "0.5"]
    jobs = {name: [str(a) for a in command] for name, command in jobs.items()}
    runs: dict[str, list[dict]] = {name: [] for name in jobs}
    outputs = {"extract": vector_dir, "add": out / "model", "extract naive": out / "naive_cv.pt", "add naive": out / "naive_model"}
    for rep in range(reps + 1):  # the first round warms the page cache and is not counted
        for name, command in jobs.items():
            if name in outputs and name != "extract":  # remove the last output untimed (extract's is add's input)
                shutil.rmtree(outputs[name], ignore_errors=True)
            result = measure(command)
            if rep:
                runs[name].append(result)
            print(f"  round {rep} {name:14s} {result['wall_s']:6.2f} s", file=sys.stderr)
    report = summarise(size, device, reps, runs)
    Path(ROOT / results).mkdir(parents=True, exist_ok=True)
    (ROOT / results / f"bench-{size}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    shutil.rmtree(out, ignore_errors=True)


def summarise(size, device, reps, runs) -> dict:
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
    for job in ("extract", "add"):
        medians[job]["vs_floor"] = medians[job]["wall_s"] / medians[f"{job} floor"]["wall_s"]
        if f"{job} naive" in medians:
            medians[job]["vs_naive"] = medians[job]["wall_s"] / medians[f"{job} naive"]["wall_s"]
    return {"size": size, "shape": SIZES[size], "device": device, "reps": reps, "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
                       f"Python {platform.python_version()}, torch {torch.__version__}",
            "medians": medians, "runs": runs}


def table(report: dict) -> str:
    lines = [f"{report['size']} preset, {report['device']}, median of {report['reps']} ({report['machine']}, {report['date']})",
             "| run | wall s | peak RSS GB | peak anon GB | ours/floor | ours/naive |", "|---|---|---|---|---|---|"]
    for name, m in report["medians"].items():
        ratio = lambda k: f"{m[k]:.2f}×" if k in m else ""  # noqa: E731
        lines.append(f"| {name} | {m['wall_s']:.2f} | {m['peak_rss_bytes'] / 1e9:.2f} | {m['peak_anon_bytes'] / 1e9:.2f} | {ratio('vs_floor')} | {ratio('vs_naive')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import fire

    fire.Fire(main)
