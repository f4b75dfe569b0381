"""The benchmark runs end to end on its small preset (how fast is measured by `make bench`, not here)."""
import json
import subprocess
import sys

from tests.conftest import ROOT


def test_bench_small_preset_runs_and_reports_every_measurement(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench/bench.py"), "--size", "small", "--reps", "1", "--naive", "False",
                             "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "results")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "results" / "bench-small.json").read_text())
    assert set(report["medians"]) == {"start-up", "extract", "extract floor", "extract floor (python)", "add", "add floor", "add floor (python)"}
    for name, measured in report["medians"].items():
        assert measured["wall_s"] > 0 and measured["peak_rss_bytes"] > 0 and measured["peak_anon_bytes"] > 0, name
    assert report["medians"]["extract"]["vs_floor"] > 0 and "| extract |" in result.stdout
    assert len(report["kernels"]) >= 3 and all(rate > 0 for rate in report["kernels"].values()) and "arithmetic alone" in result.stdout
    assert sorted(p.name for p in (tmp_path / "cache" / "small" / "cp").glob("*.safetensors")) == ["model.safetensors"]
    for job in ("extract", "add"):  # the time to the first tensor byte was seen, and came before the end
        assert 0 < report["medians"][job]["first_tensor_s"] < report["medians"][job]["wall_s"], job
        assert report["medians"][job]["user_s"] > 0 and report["spread"][job][0] <= report["medians"][job]["wall_s"]
