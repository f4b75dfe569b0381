"""`python -m reproduce --quick`: the mechanics of the end-to-end reproduction (files, rows, ranges, determinism),
never an effect size."""
import json
import os
import struct
import subprocess
import sys

from tests.conftest import ROOT

MODELS = ["base", "chat", "CP", "CP + 0.5·CV", "CP + 1.0·CV", "CP→FT", "CP→FT + CV"]


def _run(out, cache):
    result = subprocess.run([sys.executable, "-m", "reproduce", "--quick", "--out", str(out), "--cache", str(cache)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    return result


def test_the_quick_reproduction_writes_the_table_the_plot_and_the_models(tmp_path):
    result = _run(tmp_path / "out", tmp_path / "cache")
    data = json.loads((tmp_path / "out" / "quick" / "results.json").read_text())
    assert [row["model"] for row in data["table"]] == MODELS
    for row in data["table"]:
        for key in ("success_B", "replies_in_B", "ended_turn_B", "success_A"):
            assert 0.0 <= row[key] <= 1.0 and round(row[key] * data["eval_tasks"]) == row[key] * data["eval_tasks"]
    table = (tmp_path / "out" / "quick" / "results.md").read_text()
    assert table in result.stdout and all(f"| {name} |" in table for name in MODELS)
    png = (tmp_path / "out" / "quick" / "reproduce.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (700, 400)
    cache = tmp_path / "cache" / "quick-seed0"
    assert {"base", "chat", "cp", "cp_ft", "chat_vector", "cp+0.5cv", "cp+1.0cv", "cp_ft+1.0cv"} <= {p.name for p in cache.iterdir()}
    assert json.loads((cache / "chat_vector" / "chat_vector.json").read_text())  # made by the toolkit's own extract


def test_fixed_seeds_give_the_same_table_from_scratch(tmp_path):
    tables = []
    for run in ("one", "two"):
        _run(tmp_path / run, tmp_path / f"cache-{run}")
        tables.append(json.loads((tmp_path / run / "quick" / "results.json").read_text())["table"])
    assert tables[0] == tables[1]
