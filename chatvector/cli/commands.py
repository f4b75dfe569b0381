"""The commands: one typed `main` per script (its docstring is its --help), and the console entry points.

The top-level scripts and the `chatvector-*` entry points both land here; heavy imports happen inside
each main, after the command line has been checked.
"""
import os
import sys
import time
from typing import Any
from pathlib import Path

from ..imports import heavy_imports
from .options import as_bool, as_paths, as_ratio_grid, as_ratios, as_token_map, command_line, run


def extract_main(base_model_path: str, chat_model_path: str, chat_vector_path: str, dtype: str = "auto", device: str = "auto",
                 max_shard_size: str = "5GB", overwrite: bool = False) -> None:
    """Extract the chat vector (chat - base) of every floating-point weight into CHAT_VECTOR_PATH.

    Args:
        base_model_path: base model directory or hub id, e.g. meta-llama/Meta-Llama-3-8B
        chat_model_path: its chat model, e.g. meta-llama/Meta-Llama-3-8B-Instruct
        chat_vector_path: output directory
        dtype: storage dtype: auto (the chat model's own), bfloat16, float16 or float32
        device: where the arithmetic runs: auto (the CPU: faster than the GPU on an H100 server), cpu or cuda
        max_shard_size: largest output shard, e.g. 2GB (units KB MB GB KiB MiB GiB)
        overwrite: replace a non-empty output directory
    """
    started = time.perf_counter()
    overwrite = as_bool(overwrite, "overwrite")
    _brief_openmp_spins()
    head = _head_start(chat_model_path, chat_vector_path, overwrite, [base_model_path, chat_model_path], "chat_vector",
                       max_shard_size, dtype, device, floats_only=True, embeddings=True)
    try:
        with heavy_imports():
            from ..pipelines.extract import extract
        extract(base_model_path, chat_model_path, chat_vector_path, dtype=dtype, device=device, max_shard_size=max_shard_size,
                overwrite=overwrite, command=command_line(), head=head)
    finally:
        if head is not None:
            head.close()
    _report("chat vector", chat_vector_path, "chat_vector", started)


def add_main(cp_model_path: str, chat_vector_path, output_path: str, ratio=None, skip_embed: bool = False,
             special_tokens_map=None, dtype: str = "auto", device: str = "auto", max_shard_size: str = "5GB",
             overwrite: bool = False, align_vocab: bool = False, check_lineage: bool = True) -> None:
    """Add chat vectors to CP_MODEL_PATH (W = W_cp + sum_i ratio_i * CV_i) and write a checkpoint to OUTPUT_PATH.

    Args:
        cp_model_path: the continually pre-trained (CP) model: directory or hub id
        chat_vector_path: a chat vector directory, or a list: "['CV1','CV2']"
        output_path: output directory
        ratio: one per chat vector: "[0.5,0.5]"; a bare 0.5 for one vector; none means [1] for one vector
        skip_embed: keep the CP's input-embedding and output-head rows
        special_tokens_map: "{CP_TOKEN: CHAT_TOKEN}" by id or token string, or auto: these rows become the chat model's
        dtype: output dtype: auto (the CP's own), bfloat16, float16 or float32
        device: where the arithmetic runs: auto (the CPU: faster than the GPU on an H100 server), cpu or cuda
        max_shard_size: largest output shard, e.g. 2GB
        overwrite: replace a non-empty output directory
        align_vocab: match embedding and output-head rows by token string (extended or reordered vocabularies)
        check_lineage: refuse a CP that does not descend from the vector's base model (False: merge anyway)
    """
    started = time.perf_counter()
    vectors = as_paths(chat_vector_path, "CHAT_VECTOR_PATH")
    options = dict(ratios=as_ratios(ratio, len(vectors)), skip_embed=as_bool(skip_embed, "skip_embed"),
                   special_tokens_map=as_token_map(special_tokens_map), dtype=dtype, device=device, max_shard_size=max_shard_size,
                   overwrite=as_bool(overwrite, "overwrite"), command=command_line(), align_vocab=as_bool(align_vocab, "align_vocab"),
                   check_lineage=as_bool(check_lineage, "check_lineage"))
    _brief_openmp_spins()
    head = _head_start(cp_model_path, output_path, options["overwrite"], [cp_model_path, *vectors], "model", max_shard_size, dtype,
                       device, floats_only=False)
    try:
        with heavy_imports():
            from ..pipelines.add import add
        add(cp_model_path, vectors, output_path, **options, head=head)
    finally:
        if head is not None:
            head.close()
    _report("model", output_path, "model", started)


def _head_start(source, output, overwrite, inputs, prefix, max_shard_size, dtype, device, floats_only, embeddings=False):
    """Begin copying the output's stored bytes before torch is imported (io/headstart.py); only the CPU route with
    the input's own dtypes starts from such copies. `embeddings`: also extract's chat_embeddings file."""
    if dtype != "auto" or device not in ("auto", "cpu"):
        return None
    from ..io.headstart import EmbeddingFile, head_start
    from ..merge.embeddings import known_embedding_keys

    extra = EmbeddingFile("chat_embeddings", known_embedding_keys) if embeddings else None
    return head_start(str(source), str(output), overwrite, [str(i) for i in inputs], prefix, max_shard_size, floats_only, extra)


def _brief_openmp_spins() -> None:
    """Before torch loads OpenMP, unless the user chose a wait policy: idle threads spin for well under a
    millisecond, then sleep. The default spins far longer, burning cores while the main thread writes a chunk
    (0.7-1.0 s of user CPU a command on 2 cores); OMP_WAIT_POLICY=PASSIVE sleeps at once and pays a wake-up
    for every parallel region: the float32 route's blocks ran at 0.6 G elements/s on 2 threads instead of 1.9,
    and add --ratio 0.3 (then on that route) took 3.9-4.1 s instead of 3.0-3.2 (2 cores, 3 alternating rounds)."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "3000")  # GNU OpenMP (Linux torch wheels): spins, then sleeps
        os.environ.setdefault("KMP_BLOCKTIME", "1")  # LLVM and Intel OpenMP: milliseconds before sleeping


def chat_main(model_path: str, sys_prompt: str | None = None, max_new_tokens: int = 512, device: str = "auto", dtype: str = "auto",
              chat_vector=None, ratio=None, skip_embed: bool = False, special_tokens_map=None, align_vocab: bool = False,
              prompt: str | None = None, check_lineage: bool = True, **generation_options) -> None:
    """Multi-turn chat with MODEL_PATH using its chat template; replies stream as they are generated.

    Args:
        model_path: model directory or hub id
        sys_prompt: system prompt, kept across `clear`
        max_new_tokens: longest reply, in tokens
        device: auto (the GPUs if available), cpu or cuda
        dtype: auto (the model's own), bfloat16, float16 or float32
        chat_vector: chat vector directories to add in memory, no checkpoint written: "['CV']"
        ratio: with --chat_vector, one per vector: "[0.5]"
        skip_embed: with --chat_vector: keep the model's embedding rows
        special_tokens_map: with --chat_vector: "{CP_TOKEN: CHAT_TOKEN}" by id or string, or auto
        align_vocab: with --chat_vector: match embedding rows by token string
        prompt: answer this one message and exit
        check_lineage: with --chat_vector: refuse a model that does not descend from the vector's base
        generation_options: any GenerationConfig option: --do_sample True --temperature 0.7 --top_p 0.9 (greedy by default)
    """
    with heavy_imports():
        from ..engines.hf import generation_options as check_options, load_chat_model, make_reply_fn
        from .repl import terminal_io
        from ..interrupts import cleanup_on_interrupt
        from .repl import HELP, chat_loop

    options = check_options(generation_options)
    vectors = as_paths(chat_vector, "--chat_vector") if chat_vector is not None else []
    model, tokenizer = load_chat_model(
        model_path, device, dtype, vectors, as_ratios(ratio, len(vectors)) if vectors else None, as_bool(skip_embed, "skip_embed"),
        as_token_map(special_tokens_map), as_bool(align_vocab, "align_vocab"), as_bool(check_lineage, "check_lineage"))
    interactive = prompt is None and sys.stdin.isatty() and sys.stdout.isatty()
    read_line, write, stats, prompt_text = terminal_io(interactive)
    reply = make_reply_fn(model, tokenizer, write, stats, max_new_tokens, options)
    with cleanup_on_interrupt():  # Ctrl-C stops a reply (KeyboardInterrupt), and quits at the prompt
        if prompt is not None:
            history = [{"role": "system", "content": sys_prompt}] if sys_prompt else []
            reply([*history, {"role": "user", "content": prompt}])
            return
        if interactive:
            write(f"{HELP}\n")
        chat_loop(reply, read_line, write, sys_prompt, prompt_text)


def sweep_main(cp_model_path: str, chat_vector_path, language: str, ratios=None, prompts: str = "builtin", out: str | None = None,
               max_new_tokens: int = 256, batch_size: int = 8, device: str = "auto", dtype: str = "auto", min_language_rate: float = 0.9,
               write_best: str | None = None, overwrite: bool = False, sys_prompt: str | None = None, skip_embed: bool = False,
               align_vocab: bool = False, special_tokens_map=None, check_lineage: bool = True, safety_prompts: str | None = None,
               min_refusal_rate: float | None = None, judge_url: str | None = None, judge_model: str | None = None,
               judge_timeout: float = 60.0, judge_rubric: str = "xstest", engine: str = "hf", tensor_parallel_size: int = 1,
               gpu_memory_utilization: float | None = None, max_model_len: int | None = None, **generation_options) -> None:
    """Measure CP + ratio x chat vector at several ratios (reply language, instruction following, turn-taking, safety) and recommend one.

    Args:
        cp_model_path: the continually pre-trained (CP) model: directory or hub id
        chat_vector_path: a chat vector directory, or a list: "['CV1','CV2']"
        language: the language replies should be in: zh-Hant, zh-Hans, zh (either script), ko, ja, en, or any ISO 639-1 code lingua knows
        ratios: the ratios to compare; none means "[0,0.25,0.5,0.75,1]" for one vector; several vectors: "[[0.5,0.5],[1,0.5]]"
        prompts: builtin (verifiable instructions in zh-Hant, zh-Hans, ko, ja or en), FILE.txt (one per line), FILE.jsonl ("prompt"
            field, or IFEval's rows: key, prompt, instruction_id_list, kwargs)
        out: output directory (replies.jsonl, summary.json, summary.md, sweep.png); an existing sweep directory resumes;
            none means sweep-<model name>-<date-time>
        max_new_tokens: longest reply, in tokens (a reply that reaches it did not end its turn)
        batch_size: prompts generated together (left-padded)
        device: auto (the GPUs if available), cpu or cuda
        dtype: auto (the model's own), bfloat16, float16 or float32
        min_language_rate: share of replies that must be in LANGUAGE for a ratio to be recommended
        write_best: also write the recommended ratio's checkpoint here, with add's code and the sweep's tables in its model card
        overwrite: with --write_best: replace a non-empty directory
        sys_prompt: system prompt for every conversation
        skip_embed: keep the CP's embedding rows (as add --skip_embed)
        align_vocab: match embedding rows by token string (as add --align_vocab)
        special_tokens_map: "{CP_TOKEN: CHAT_TOKEN}" or auto (as add --special_tokens_map)
        check_lineage: refuse a CP that does not descend from the vector's base model
        safety_prompts: also measure refusals: builtin (harmful and benign look-alikes in zh-Hant, zh-Hans, ko, ja or en) or
            FILE.jsonl of {"prompt", "label": "harmful"|"benign", "category"} rows
        min_refusal_rate: with --safety_prompts: share of harmful prompts a recommended ratio must refuse (none: not required)
        judge_url: an OpenAI-compatible endpoint to judge the replies, e.g. http://127.0.0.1:8000/v1 (key: CHATVECTOR_JUDGE_API_KEY)
        judge_model: the model name the judge serves
        judge_timeout: seconds to wait for one judgement
        judge_rubric: for safety replies: xstest (a chat model classifies compliance and refusal) or guard (a guard model: safe or unsafe)
        engine: hf (transformers) or vllm (pip install 'chatvector[vllm]'; weights swapped in place, tensor parallel)
        tensor_parallel_size: with --engine vllm: GPUs (or CPU workers) to shard the model over
        gpu_memory_utilization: with --engine vllm: share of each GPU's memory vLLM may use
        max_model_len: with --engine vllm: longest prompt + reply in tokens (smaller fits a smaller KV cache)
        generation_options: any GenerationConfig option: --repetition_penalty 1.1 (greedy by default, as the paper evaluated); with
            --engine vllm, any other vLLM engine option as --vllm_<option> (e.g. --vllm_enforce_eager True)
    """
    with heavy_imports():
        from ..evaluation.sweep import SweepOptions, sweep

    vectors = as_paths(chat_vector_path, "CHAT_VECTOR_PATH")
    vllm = {k.removeprefix("vllm_"): v for k, v in generation_options.items() if k.startswith("vllm_")}
    vllm.update({k: v for k, v in (("gpu_memory_utilization", gpu_memory_utilization), ("max_model_len", max_model_len)) if v is not None})
    options = SweepOptions(
        language=language, ratios=as_ratio_grid(ratios, len(vectors)), prompts=prompts, out=out, max_new_tokens=max_new_tokens,
        batch_size=batch_size, device=device, dtype=dtype, min_language_rate=min_language_rate, write_best=write_best,
        overwrite=as_bool(overwrite, "overwrite"), sys_prompt=sys_prompt, skip_embed=as_bool(skip_embed, "skip_embed"),
        align_vocab=as_bool(align_vocab, "align_vocab"), special_tokens_map=as_token_map(special_tokens_map),
        check_lineage=as_bool(check_lineage, "check_lineage"), command=command_line(), engine=engine,
        generation={k: v for k, v in generation_options.items() if not k.startswith("vllm_")}, tensor_parallel_size=tensor_parallel_size,
        vllm=vllm, safety_prompts=safety_prompts, min_refusal_rate=min_refusal_rate, judge_url=judge_url, judge_model=judge_model,
        judge_timeout=judge_timeout, judge_rubric=judge_rubric)
    result = sweep(cp_model_path, vectors, options)
    print(f"{result.table_text}\n{'recommended' if result.recommended is not None else 'no recommendation'}: {result.reason}")
    print(f"({result.generated} replies generated, {result.total - result.generated} resumed; files in {result.out_dir})", file=sys.stderr)
    if write_best:
        if result.recommended is None:
            from ..errors import ChatVectorError

            raise ChatVectorError(f"no ratio qualified, so nothing was written to {write_best}; lower --min_language_rate or try other ratios")
        from ..pipelines.add import add

        started = time.perf_counter()
        best = result.recommended if isinstance(result.recommended, list) else [result.recommended]
        notes = f"## Ratio sweep\n\n{result.title}\n\n{result.table_text}\n{result.reason}\n"
        add(cp_model_path, vectors, write_best, ratios=best, skip_embed=options.skip_embed, special_tokens_map=options.special_tokens_map,
            dtype=dtype, overwrite=options.overwrite, command=options.command, align_vocab=options.align_vocab,
            check_lineage=options.check_lineage, card_notes=notes)
        _report("model", write_best, "model", started)


def inspect_main(chat_vector_path: str, compare: str | None = None, model: str | None = None, plot: str | None = None,
                 json: str | None = None, convert: str | None = None, overwrite: bool = False) -> None:
    """Show what a chat vector changes, per layer and module type (streamed: memory stays a chunk).

    Args:
        chat_vector_path: a chat vector directory (ours, or one written by the reference script)
        compare: a second chat vector: adds the cosine between the two, per weight and per layer
        model: a model (e.g. your CP): changes relative to its weights, and its lineage distance from the vector's base
        plot: write a heatmap PNG (layers x module types) here, e.g. heatmap.png
        json: write every number as JSON here, e.g. inspect.json
        convert: instead, write a reference-format vector (pytorch_model.bin) in chatvector's format to this directory
        overwrite: with --convert: replace a non-empty output directory
    """
    import json as json_module

    with heavy_imports():
        from ..pipelines.inspection import inspect_vector, table

    if convert:
        from ..pipelines.convert import convert_reference

        started = time.perf_counter()
        convert_reference(chat_vector_path, convert, overwrite=as_bool(overwrite, "overwrite"), command=command_line())
        _report("chat vector", convert, "chat_vector", started)
        return

    report = inspect_vector(chat_vector_path, compare, model)
    print(table(report))
    if json:
        Path(json).write_text(json_module.dumps(report.to_json(), indent=2) + "\n")
    if plot:
        from ..pipelines.inspection import heatmap

        heatmap(report, Path(plot))


def _report(what: str, path: str, prefix: str, started: float) -> None:
    """One summary line on stderr: what was written, where, how big, how long."""
    shards = sorted(Path(path).glob(f"{prefix}*.safetensors"))
    size = sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file())
    print(f"wrote {what} {path}: {_human(size)}, {len(shards)} shard{'s' * (len(shards) != 1)}, "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def _human(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


def generation_options() -> dict[str, type]:
    """Every option GenerationConfig takes, with its documented type (bool, int, float; else parsed as a literal)."""
    import re

    with heavy_imports():
        from transformers import GenerationConfig
    documented = {name: {"bool": bool, "int": int, "float": float}[kind]
                  for name, kind in re.findall(r"^\s+(\w+) \(`(bool|int|float)`", GenerationConfig.__doc__ or "", re.M)}
    names = [k for k in GenerationConfig().to_dict() if not k.startswith("_") and k != "transformers_version"]
    return {name: documented.get(name, Any) for name in names}


def extract_command() -> None:
    run(extract_main)
    _exit_at_once()


def add_command() -> None:
    run(add_main)
    _exit_at_once()


def _exit_at_once() -> None:
    """After a finished extract or add (a failure exits as usual, through its cleanup): every file is closed and
    renamed, every thread joined, the summary printed, so skip the interpreter's teardown of torch and the libraries
    we loaded, which took 0.1-0.2 s of add's 2.2 s (2 cores, 4 alternating rounds: 2.21-2.38 s, 2.08-2.19 s without)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can reach it anyway
            pass
    os._exit(0)


def inspect_command() -> None:
    run(inspect_main)


def sweep_command() -> None:
    run(sweep_main, lambda: {**generation_options(), "vllm_*": Any})  # vLLM's own options are checked by the vLLM engine


def chat_command() -> None:
    run(chat_main, generation_options)
