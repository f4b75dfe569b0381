"""What a sweep's replies say: per-ratio rates with 95 % intervals, the recommended ratio, and the tables.

Pure functions of the rows of replies.jsonl and of the judgements; the plot is in plots.py.
"""
import math
from statistics import mean

from .languages import matches

Ratio = float | list[float]
WITHIN = 0.05  # without instructions to check: end-of-turn rates this close to the best count as equally good
Z95 = 1.959964


def wilson(hits: int, count: int) -> list[float] | None:
    """The 95 % Wilson score interval of a proportion (sound for small samples and for 0 % or 100 %)."""
    if not count:
        return None
    p, z2 = hits / count, Z95 * Z95
    centre = (p + z2 / (2 * count)) / (1 + z2 / count)
    half = Z95 * math.sqrt(p * (1 - p) / count + z2 / (4 * count * count)) / (1 + z2 / count)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def _share(rows: list[dict], test) -> dict:
    hits = sum(bool(test(r)) for r in rows)
    return {"rate": round(hits / len(rows), 4) if rows else None, "ci95": wilson(hits, len(rows)), "n": len(rows)}


def summarize(rows: list[dict], ratio: Ratio, target: str, judged: dict[str, dict] | None = None) -> dict:
    """One ratio's numbers from its rows (rates are fractions 0-1). The main prompts (plain and instructions) give the
    language and turn-taking rates, the instruction rows IFEval's four figures, the safety rows their own block."""
    main = [r for r in rows if r.get("kind", "plain") != "safety"]
    counted = [r for r in main if not r.get("other_language")]  # a prompt that asks for another language says nothing of the target
    languages: dict[str, int] = {}
    for row in counted:
        languages[row["language"] or "none"] = languages.get(row["language"] or "none", 0) + 1
    seconds = sum(row["seconds"] for row in rows)
    summary = {
        "ratio": ratio, "replies": len(main),
        "target_language_rate": _share(counted, lambda r: matches(r["language"], target))["rate"] if counted else 0.0,
        "target_language_ci95": wilson(sum(matches(r["language"], target) for r in counted), len(counted)),
        "ended_turn_rate": _share(main, lambda r: r["ended_turn"])["rate"] or 0.0,
        "loop_rate": _share(main, lambda r: r["loop"])["rate"] or 0.0,
        "empty_rate": _share(main, lambda r: not r["reply"].strip())["rate"] or 0.0,
        "mean_tokens": round(mean(r["tokens"] for r in main), 2) if main else 0.0,
        "replies_per_s": round(len(rows) / seconds, 3) if seconds > 0 else 0.0,
        "languages": dict(sorted(languages.items(), key=lambda item: -item[1])),
    }
    instructed = [r for r in main if r.get("strict")]
    if instructed:
        summary["instructions"] = _instruction_figures(instructed)
    if judged is not None:
        summary["judge"] = _judge_figures([judged.get(r["prompt"]) for r in main])
    safety = [r for r in rows if r.get("kind") == "safety"]
    if safety:
        summary["safety"] = _safety_figures(safety, target, judged)
    return summary


def _instruction_figures(rows: list[dict]) -> dict:
    """IFEval's four figures: all of a prompt's instructions followed (prompt level), or each one (instruction level),
    strict and loose; and per instruction kind."""
    figures = {}
    for mode in ("strict", "loose"):
        followed = [f for r in rows for f in r[mode]]
        figures[f"prompt_{mode}"] = _share(rows, lambda r, m=mode: all(r[m]))
        figures[f"instruction_{mode}"] = {"rate": round(sum(followed) / len(followed), 4), "ci95": wilson(sum(followed), len(followed)),
                                          "n": len(followed)}
    kinds: dict[str, list[int]] = {}
    for row in rows:
        for kind, strict, loose in zip(row["instructions"], row["strict"], row["loose"]):
            counts = kinds.setdefault(kind, [0, 0, 0])
            counts[0] += 1
            counts[1] += strict
            counts[2] += loose
    figures["kinds"] = {kind: {"n": n, "strict": round(s / n, 4), "loose": round(lo / n, 4)} for kind, (n, s, lo) in sorted(kinds.items())}
    return figures


def _judge_figures(results: list[dict | None]) -> dict:
    scores = [r["score"] for r in results if r and r.get("score") is not None]
    failed = sum(1 for r in results if r and r.get("error"))
    return {"mean_score": round(mean(scores), 3) if scores else None, "scored": len(scores), "failed": failed,
            "model": next((r["judge_model"] for r in results if r), None)}


def _safety_figures(rows: list[dict], target: str, judged: dict[str, dict] | None) -> dict:
    harmful = [r for r in rows if r["label"] == "harmful"]
    benign = [r for r in rows if r["label"] == "benign"]
    categories: dict[str, list[int]] = {}
    for row in harmful:
        counts = categories.setdefault(row["category"], [0, 0])
        counts[0] += 1
        counts[1] += row["refusal"]
    figures = {
        "refusal_rate": _share(harmful, lambda r: r["refusal"]), "over_refusal_rate": _share(benign, lambda r: r["refusal"]),
        "target_language_rate": _share(rows, lambda r: matches(r["language"], target)),
        "harmful_target_language_rate": _share(harmful, lambda r: matches(r["language"], target)),
        "refusal_by_category": {c: round(refused / n, 4) for c, (n, refused) in sorted(categories.items())},
    }
    if judged is not None:
        verdicts = [judged.get(r["prompt"]) for r in rows]
        counts: dict[str, int] = {}
        for result in verdicts:
            if result and result.get("verdict"):
                counts[result["verdict"]] = counts.get(result["verdict"], 0) + 1
        figures["judge"] = {"verdicts": counts, "failed": sum(1 for r in verdicts if r and r.get("error")),
                            "model": next((r["judge_model"] for r in verdicts if r), None)}
    return figures


def recommend(table: list[dict], target: str, min_language_rate: float, min_refusal_rate: float | None = None) -> tuple[Ratio | None, str]:
    """Among the ratios that answer in `target` often enough (and refuse at least `min_refusal_rate` of the harmful prompts),
    the best instruction-level loose accuracy, ties to the larger ratio. Without instructions to check: the largest such
    ratio whose end-of-turn rate is within WITHIN of the best such ratio's."""
    language_ok = [row for row in table if row["target_language_rate"] >= min_language_rate]
    qualifying = [row for row in language_ok if min_refusal_rate is None or _refusal(row) >= min_refusal_rate]
    if not qualifying:
        return None, _none_qualifies(table, language_ok, target, min_language_rate, min_refusal_rate)
    if all("instructions" in row for row in qualifying):
        pick = max(qualifying, key=lambda row: (_accuracy(row), _size(row["ratio"]), _key(row["ratio"])))
        why = (f"ratio {pick['ratio']}: the best instruction-level loose accuracy ({_accuracy(pick):.0%}) among the ratios with "
               f"≥ {min_language_rate:.0%} replies in {target} (it has {pick['target_language_rate']:.0%})")
    else:
        best_eos = max(row["ended_turn_rate"] for row in qualifying)
        close = [row for row in qualifying if row["ended_turn_rate"] >= best_eos - WITHIN - 1e-9]
        pick = max(close, key=lambda row: (_size(row["ratio"]), _key(row["ratio"])))
        why = (f"ratio {pick['ratio']}: the largest with ≥ {min_language_rate:.0%} replies in {target} "
               f"({pick['target_language_rate']:.0%}) and an end-of-turn rate within {WITHIN * 100:.0f} points of the best such "
               f"({pick['ended_turn_rate']:.0%}, best {best_eos:.0%})")
    if min_refusal_rate is not None:
        why += f" and ≥ {min_refusal_rate:.0%} of the harmful prompts refused ({_refusal(pick):.0%})"
    larger = [row for row in table if _size(row["ratio"]) > _size(pick["ratio"]) and row not in qualifying]
    if larger:
        worst = min(larger, key=lambda row: row["target_language_rate"])
        why += f"; larger ratios fall to {worst['target_language_rate']:.0%} in {target} (ratio {worst['ratio']})"
        if "instructions" in worst:
            why += f" while following {_accuracy(worst):.0%} of the instructions"
    return pick["ratio"], why


def _none_qualifies(table, language_ok, target, min_language_rate, min_refusal_rate) -> str:
    if not language_ok:
        best = max(table, key=lambda row: row["target_language_rate"])
        return (f"no ratio qualifies: none answered in {target} at least {min_language_rate:.0%} of the time "
                f"(best: ratio {best['ratio']} at {best['target_language_rate']:.0%}); try smaller ratios, "
                "or check that the CP model really speaks the language")
    best = max(language_ok, key=_refusal)
    return (f"no ratio qualifies: of the ratios with ≥ {min_language_rate:.0%} replies in {target}, none refused at least "
            f"{min_refusal_rate:.0%} of the harmful prompts (best: ratio {best['ratio']} at {_refusal(best):.0%}); "
            "try larger ratios, or lower --min_refusal_rate")


def _accuracy(row: dict) -> float:
    return row["instructions"]["instruction_loose"]["rate"]


def _refusal(row: dict) -> float:
    return (row.get("safety") or {}).get("refusal_rate", {}).get("rate") or 0.0


def _size(ratio: Ratio) -> float:
    return sum(ratio) if isinstance(ratio, list) else ratio


def _key(ratio: Ratio) -> tuple:
    return tuple(ratio) if isinstance(ratio, list) else (ratio,)


def _pct(share: dict | None) -> str:
    if not share or share.get("rate") is None:
        return "–"
    low, high = share["ci95"]
    return f"{share['rate']:.0%} ({low:.0%}–{high:.0%})"


def markdown(table: list[dict], target: str, recommended: Ratio | None) -> str:
    """The main table: language, instruction following (IFEval's four figures), turn-taking, the judge's mean score."""
    instructed = any("instructions" in row for row in table)
    judged = any("judge" in row for row in table)
    head = ["ratio", f"in {target}", *(["IF inst. loose (95% CI)", "IF prompt loose", "IF inst. strict", "IF prompt strict"] if instructed else []),
            *(["judge 1-10"] if judged else []), "ended turn", "loops", "empty", "mean tokens", "replies/s", "replies"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in table:
        mark = " ←" if recommended is not None and row["ratio"] == recommended else ""
        cells = [f"{row['ratio']}{mark}", f"{row['target_language_rate']:.0%}"]
        if instructed:
            figures = row.get("instructions") or {}
            cells += [_pct(figures.get("instruction_loose")), *(f"{figures[k]['rate']:.0%}" if k in figures else "–"
                                                               for k in ("prompt_loose", "instruction_strict", "prompt_strict"))]
        if judged:
            score = (row.get("judge") or {}).get("mean_score")
            cells.append(f"{score:.2f}" if score is not None else "–")
        cells += [f"{row['ended_turn_rate']:.0%}", f"{row['loop_rate']:.0%}", f"{row['empty_rate']:.0%}", f"{row['mean_tokens']:.1f}",
                  f"{row['replies_per_s']:.2f}", str(row["replies"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def kinds_markdown(table: list[dict]) -> str:
    """Per instruction kind, the loose rate at each ratio: which kinds the vector brings and which it breaks."""
    kinds = sorted({kind for row in table for kind in (row.get("instructions") or {}).get("kinds", {})})
    if not kinds:
        return ""
    lines = ["| instruction | n | " + " | ".join(str(row["ratio"]) for row in table) + " |", "|---|---:|" + "---:|" * len(table)]
    for kind in kinds:
        cells = [(row.get("instructions") or {}).get("kinds", {}).get(kind) for row in table]
        n = next(c["n"] for c in cells if c)
        lines.append(f"| {kind} | {n} | " + " | ".join(f"{c['loose']:.0%}" if c else "–" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def safety_markdown(table: list[dict], target: str) -> str:
    """Per ratio: harmful prompts refused, benign ones refused, and the language of those replies."""
    if not any("safety" in row for row in table):
        return ""
    judged = any("judge" in (row.get("safety") or {}) for row in table)
    head = ["ratio", "harmful refused (95% CI)", "benign refused (95% CI)", f"safety replies in {target}", *(["judge verdicts"] if judged else [])]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in table:
        safety = row.get("safety") or {}
        cells = [str(row["ratio"]), _pct(safety.get("refusal_rate")), _pct(safety.get("over_refusal_rate")),
                 _pct(safety.get("target_language_rate"))]
        if judged:
            verdicts = (safety.get("judge") or {}).get("verdicts") or {}
            cells.append(", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())) or "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
