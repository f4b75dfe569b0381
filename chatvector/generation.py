"""Replies to many prompts at once: left-padded batches, stopping each row at any end-of-turn id."""
from dataclasses import dataclass

import torch


@dataclass
class Reply:
    text: str
    tokens: int  # generated tokens before the end-of-turn token (or all of them)
    ended_turn: bool  # the model ended its turn, rather than running into max_new_tokens
    loop: bool  # the reply's tail repeats itself


def conversation(prompt: str, system_prompt: str | None) -> list[dict]:
    return [*([{"role": "system", "content": system_prompt}] if system_prompt else []), {"role": "user", "content": prompt}]


@torch.no_grad()
def generate_replies(model, tokenizer, conversations: list[list[dict]], max_new_tokens: int, eos_ids: list[int],
                     options: dict) -> list[Reply]:
    """One batch, greedy unless `options` say otherwise; rows are padded on the left so every reply starts at once."""
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[0]
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if pad is None:
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(pad_id)
    try:  # the template writes the special tokens (bos) itself, as apply_chat_template does
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, eos_token_id=eos_ids, pad_token_id=pad_id, **options)
    stops = set(eos_ids)
    replies = []
    for row in output[:, inputs["input_ids"].shape[1]:].tolist():
        end = next((i for i, token in enumerate(row) if token in stops), None)
        ids = row if end is None else row[:end]
        text = tokenizer.decode(ids, skip_special_tokens=True).strip()
        replies.append(Reply(text, len(ids), end is not None, has_loop(ids)))
    return replies


def has_loop(ids: list[int], max_period: int = 50, min_span: int = 16) -> bool:
    """Degenerate repetition: the last max(3·p, min_span) tokens repeat with some period p ≤ max_period."""
    for period in range(1, max_period + 1):
        span = max(3 * period, min_span)
        if span > len(ids):
            return False
        tail = ids[len(ids) - span:]
        if all(tail[i] == tail[i - period] for i in range(period, span)):
            return True
    return False
