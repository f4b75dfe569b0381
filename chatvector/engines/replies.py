"""A generated reply as every engine reports it, and the checks on its tokens that need no model (loops)."""
from dataclasses import dataclass


@dataclass
class Reply:
    text: str
    tokens: int  # generated tokens before the end-of-turn token (or all of them)
    ended_turn: bool  # the model ended its turn, rather than running into max_new_tokens
    loop: bool  # the reply's tail repeats itself


def conversation(prompt: str, system_prompt: str | None) -> list[dict]:
    return [*([{"role": "system", "content": system_prompt}] if system_prompt else []), {"role": "user", "content": prompt}]


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
