"""Does sweep_ratios.py pick the ratio that task success picks? It judges CP + r·CV from the held-out B tasks written
as IFEval rows (`startend:end_checker`: the reply ends with the exact answer), run as a user would run it."""
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from reproduce import world

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = "zh-Hant"  # language B, as lingua and the script detector label it
MIN_LANGUAGE_RATE = 0.9  # the sweep's default --min_language_rate, used for both picks


def ifeval_rows(tasks: list[world.Task]) -> list[dict]:
    """Each task asked in B, its instruction checked by the exact answer's text as the tokenizer decodes it."""
    tokenizer = world.make_tokenizer(chat=True)
    rows = []
    for n, task in enumerate(tasks):
        answer = tokenizer.decode([world.ID[t] for t in task.reply("b")], skip_special_tokens=True).strip()
        rows.append({"key": str(n), "prompt": " ".join(task.instruction("b")), "instruction_id_list": ["startend:end_checker"],
                     "kwargs": [{"end_phrase": answer}]})
    return rows


def picked(rates: dict[float, tuple[float, float]], min_language_rate: float = MIN_LANGUAGE_RATE) -> float | None:
    """The sweep's own rule (`recommend`) on {ratio: (language rate, task success)}: among ratios in the language often
    enough, the best score, ties to the larger ratio; None if no ratio qualifies."""
    from chatvector.evaluation.report import recommend

    table = [{"ratio": ratio, "target_language_rate": language, "ended_turn_rate": 1.0,
              "instructions": {"instruction_loose": {"rate": score}}} for ratio, (language, score) in rates.items()]
    return recommend(table, LANGUAGE, min_language_rate)[0]


def run(cp: Path, vector: Path, tasks: list[world.Task], ratios: list[float], table: list[dict], out: Path, log) -> dict:
    """Run the sweep on the CP and the vector at `ratios`; its recommendation beside the ground truth's pick."""
    prompts = out / "heldout_b.jsonl"
    prompts.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ifeval_rows(tasks)), encoding="utf-8")
    sweep_dir = cp.with_name(f"sweep-{cp.name}-{vector.name}")
    command = [sys.executable, str(ROOT / "sweep_ratios.py"), str(cp), f"['{vector}']", "--language", LANGUAGE, "--prompts", str(prompts),
               "--ratios", json.dumps(ratios), "--max_new_tokens", "12", "--batch_size", "100", "--device", "cpu", "--out", str(sweep_dir),
               "--min_language_rate", str(MIN_LANGUAGE_RATE)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"sweep_ratios.py failed ({done.returncode}):\n{done.stderr[-3000:]}")
    summary = json.loads((sweep_dir / "summary.json").read_text(encoding="utf-8"))
    (out / "sweep").mkdir(exist_ok=True)
    for name in ("summary.json", "summary.md", "sweep.png"):
        shutil.copyfile(sweep_dir / name, out / "sweep" / name)
    measured = {row["ratio"]: row for row in table if row["ratio"] is not None}
    swept = {row["ratio"]: row for row in summary["ratios"]}
    per_ratio = [{"ratio": r, "success_B": measured[r]["success_B"], "replies_in_B": measured[r]["replies_in_B"],
                  "sweep_if_loose": swept[r]["instructions"]["instruction_loose"]["rate"],
                  "sweep_in_language": swept[r]["target_language_rate"], "sweep_ended_turn": swept[r]["ended_turn_rate"]}
                 for r in ratios]
    truth = picked({row["ratio"]: (row["replies_in_B"], row["success_B"]) for row in per_ratio})
    log(f"sweep recommends {summary['recommended_ratio']}; task success picks {truth}")
    return {"language": LANGUAGE, "min_language_rate": MIN_LANGUAGE_RATE, "recommended": summary["recommended_ratio"],
            "reason": summary["reason"], "ground_truth": truth, "agrees": summary["recommended_ratio"] == truth, "ratios": per_ratio,
            "command": shlex.join(command[1:]).replace(f"{ROOT}/", "")}
