"""What a sweep's replies say: per-ratio rates, the recommended ratio, and the table (pure functions of the rows; the plot is in plots.py)."""
from statistics import mean

from .languages import matches

Ratio = float | list[float]
COLUMNS = ("ratio", "target_language_rate", "ended_turn_rate", "loop_rate", "empty_rate", "mean_tokens", "replies_per_s")
WITHIN = 0.05  # end-of-turn rates this close to the best count as equally good


def summarize(rows: list[dict], ratio: Ratio, target: str) -> dict:
    """One ratio's numbers, from its rows of replies.jsonl (rates are fractions 0-1)."""
    count = len(rows)
    languages: dict[str, int] = {}
    for row in rows:
        label = row["language"] or "none"
        languages[label] = languages.get(label, 0) + 1
    seconds = sum(row["seconds"] for row in rows)
    return {
        "ratio": ratio,
        "replies": count,
        "target_language_rate": _rate(rows, lambda r: matches(r["language"], target)),
        "ended_turn_rate": _rate(rows, lambda r: r["ended_turn"]),
        "loop_rate": _rate(rows, lambda r: r["loop"]),
        "empty_rate": _rate(rows, lambda r: not r["reply"].strip()),
        "mean_tokens": round(mean(r["tokens"] for r in rows), 2) if rows else 0.0,
        "replies_per_s": round(count / seconds, 3) if seconds > 0 else 0.0,
        "languages": dict(sorted(languages.items(), key=lambda item: -item[1])),
    }


def _rate(rows: list[dict], test) -> float:
    return round(sum(bool(test(r)) for r in rows) / len(rows), 4) if rows else 0.0


def recommend(table: list[dict], target: str, min_language_rate: float) -> tuple[Ratio | None, str]:
    """The largest ratio that answers in `target` often enough and ends its turn about as often as the best such ratio."""
    qualifying = [row for row in table if row["target_language_rate"] >= min_language_rate]
    if not qualifying:
        best = max(table, key=lambda row: row["target_language_rate"])
        return None, (f"no ratio qualifies: none answered in {target} at least {min_language_rate:.0%} of the time "
                      f"(best: ratio {best['ratio']} at {best['target_language_rate']:.0%}); try smaller ratios, "
                      "or check that the CP model really speaks the language")
    best_eos = max(row["ended_turn_rate"] for row in qualifying)
    close = [row for row in qualifying if row["ended_turn_rate"] >= best_eos - WITHIN - 1e-9]
    pick = max(close, key=lambda row: (_size(row["ratio"]), _key(row["ratio"])))
    larger = [row for row in table if _size(row["ratio"]) > _size(pick["ratio"])]
    why = (f"ratio {pick['ratio']}: the largest with ≥ {min_language_rate:.0%} replies in {target} "
           f"({pick['target_language_rate']:.0%}) and an end-of-turn rate within {WITHIN * 100:.0f} points of the best such "
           f"({pick['ended_turn_rate']:.0%}, best {best_eos:.0%})")
    if larger:
        worst = min(larger, key=lambda row: row["target_language_rate"])
        why += f"; larger ratios fall to {worst['target_language_rate']:.0%} in {target} (ratio {worst['ratio']})"
    return pick["ratio"], why


def _size(ratio: Ratio) -> float:
    return sum(ratio) if isinstance(ratio, list) else ratio


def _key(ratio: Ratio) -> tuple:
    return tuple(ratio) if isinstance(ratio, list) else (ratio,)


def markdown(table: list[dict], target: str, recommended: Ratio | None) -> str:
    header = f"| ratio | in {target} | ended turn | loops | empty | mean tokens | replies/s | replies |"
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table:
        mark = " ←" if recommended is not None and row["ratio"] == recommended else ""
        lines.append(f"| {row['ratio']}{mark} | {row['target_language_rate']:.0%} | {row['ended_turn_rate']:.0%} | "
                     f"{row['loop_rate']:.0%} | {row['empty_rate']:.0%} | {row['mean_tokens']:.1f} | {row['replies_per_s']:.2f} | "
                     f"{row['replies']} |")
    return "\n".join(lines) + "\n"
