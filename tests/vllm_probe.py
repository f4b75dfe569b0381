"""Greedy token ids from vLLM, for tests/test_vllm.py (vLLM starts its workers by spawning: this runs as its own script).

    python tests/vllm_probe.py swapped CP CV RATIOS TP PROMPTS.json [OPTIONS.json]   # the sweep's engine, weights swapped ratio by ratio
    python tests/vllm_probe.py fresh MODEL PROMPTS.json               # a plain vLLM engine started on a checkpoint (add's)

Prints {"ids": {ratio or "fresh": [[token ids of each reply], ...]}} as JSON on its last line.
"""
import json
import sys
from pathlib import Path


def swapped(cp: str, cv: str, ratios: list[float], tp: int, conversations: list, merge_options: dict) -> dict:
    """`merge_options`: add's (skip_embed, special_tokens_map, align_vocab)."""
    from chatvector.engines.vllm import VLLMEngine

    found = {}
    with VLLMEngine(cp, [cv], 1, tensor_parallel_size=tp, options={"enforce_eager": True}, log=Path(cp).parent / f"vllm-tp{tp}.log",
                    **merge_options) as engine:
        found["before"] = _ids(engine, conversations)
        for ratio in ratios:
            engine.set_ratio([ratio])
            found[str(ratio)] = _ids(engine, conversations)
    return found


def _ids(engine, conversations: list) -> list[list[int]]:
    texts = [engine.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    prompts = [{"prompt_token_ids": engine.tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]
    return [list(o.outputs[0].token_ids) for o in engine.llm.generate(prompts, engine._sampling(24), use_tqdm=False)]


def fresh(model: str, conversations: list) -> dict:
    """vLLM as a user would start it on add's checkpoint: its tokenizer's template, its generation config's stop ids."""
    from transformers import AutoTokenizer, GenerationConfig
    from vllm import LLM, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(model)
    eos = GenerationConfig.from_pretrained(model).eos_token_id
    llm = LLM(model=model, dtype="float32", enforce_eager=True, seed=0)
    try:
        texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
        prompts = [{"prompt_token_ids": tokenizer(t, add_special_tokens=False)["input_ids"]} for t in texts]
        params = SamplingParams(max_tokens=24, temperature=0.0, stop_token_ids=eos if isinstance(eos, list) else [eos])
        return {"fresh": [list(o.outputs[0].token_ids) for o in llm.generate(prompts, params, use_tqdm=False)]}
    finally:
        llm.llm_engine.engine_core.shutdown()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    args = sys.argv[1:]
    if args[0] == "swapped":
        options = json.loads(Path(args[6]).read_text()) if len(args) > 6 else {}
        result = swapped(args[1], args[2], json.loads(args[3]), int(args[4]), json.loads(Path(args[5]).read_text()), options)
    else:
        result = fresh(args[1], json.loads(Path(args[2]).read_text()))
    print(json.dumps({"ids": result}))
