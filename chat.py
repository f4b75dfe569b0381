"""Chat with a model in the terminal, optionally with chat vectors applied in memory."""
import sys

from chatvector.cli import as_bool, as_paths, as_ratios, as_token_map, run


def main(model_path: str, sys_prompt: str | None = None, max_new_tokens: int = 512, device: str = "auto", dtype: str = "auto",
         chat_vector=None, ratio=None, skip_embed: bool = False, special_tokens_map=None, align_vocab: bool = False, prompt: str | None = None,
         **generation_options) -> None:
    """Multi-turn chat using the model's chat template; replies stream as they are generated.

    Args:
        model_path: model directory or hub id
        sys_prompt: system prompt, kept across `clear`
        max_new_tokens: longest reply
        device: auto (GPUs if available), cpu or cuda
        dtype: auto (the model's own), bfloat16, float16 or float32
        chat_vector: chat vector directories to add in memory: "['CV']" (no checkpoint is written)
        ratio: one per chat vector: "[0.5]"
        skip_embed: with --chat_vector: keep the model's embedding rows
        special_tokens_map: with --chat_vector: "{CP_TOKEN: CHAT_TOKEN}" by id or string, or auto
        align_vocab: with --chat_vector: match embedding rows by token string
        prompt: answer this one message and exit
        generation_options: any GenerationConfig option: --do_sample True --temperature 0.7 --top_p 0.9 ...
    """
    from chatvector.chat import generation_options as check_options, load_chat_model, make_reply_fn, terminal_io
    from chatvector.repl import HELP, chat_loop

    options = check_options(generation_options)
    vectors = as_paths(chat_vector, "--chat_vector") if chat_vector is not None else []
    model, tokenizer = load_chat_model(
        str(model_path), device, dtype,
        vectors, as_ratios(ratio, len(vectors)) if vectors else None, as_bool(skip_embed, "skip_embed"), as_token_map(special_tokens_map),
        as_bool(align_vocab, "align_vocab"))
    interactive = prompt is None and sys.stdin.isatty() and sys.stdout.isatty()
    read_line, write, stats, prompt_text = terminal_io(interactive)
    reply = make_reply_fn(model, tokenizer, write, stats, int(max_new_tokens), options)
    if prompt is not None:
        history = [{"role": "system", "content": sys_prompt}] if sys_prompt else []
        reply([*history, {"role": "user", "content": str(prompt)}])
        return
    if interactive:
        write(f"{HELP}\n")
    chat_loop(reply, read_line, write, sys_prompt, prompt_text)


if __name__ == "__main__":
    run(main)
