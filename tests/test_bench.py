"""The benchmark runs end to end on its small preset (how fast is measured by `make bench`, not here)."""
import ctypes
import importlib.util
import json
import mmap
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import ROOT


def test_bench_small_preset_runs_and_reports_every_measurement(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "bench/bench.py"), "--size", "small", "--reps", "1", "--naive", "False", "--evict", "True",
                             "--cache", str(tmp_path / "cache"), "--results", str(tmp_path / "results")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "results" / "bench-small.json").read_text())
    assert set(report["medians"]) == {"start-up", "extract", "extract floor", "extract floor (python)", "add", "add floor", "add floor (python)"}
    for name, measured in report["medians"].items():
        assert measured["wall_s"] > 0 and measured["peak_rss_bytes"] > 0 and measured["peak_anon_bytes"] > 0, name
    assert report["medians"]["extract"]["vs_floor"] > 0 and "| extract |" in result.stdout
    assert len(report["kernels"]) >= 3 and all(rate > 0 for rate in report["kernels"].values()) and "arithmetic alone" in result.stdout
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")]
    assert report["machine"].startswith(f"{models[0]}, ") and f"{models[0]}, " in result.stdout  # which host of a VM type
    assert report["page_cache"].startswith("bench files evicted") and "page cache: bench files evicted" in result.stdout
    assert sorted(p.name for p in (tmp_path / "cache" / "small" / "cp").glob("*.safetensors")) == ["model.safetensors"]
    for job in ("extract", "add"):  # the time to the first tensor byte was seen, and came before the end
        assert 0 < report["medians"][job]["first_tensor_s"] < report["medians"][job]["wall_s"], job
        assert report["medians"][job]["user_s"] > 0 and report["spread"][job][0] <= report["medians"][job]["wall_s"]


def _resident_pages(path) -> int:
    """Pages of a file in the page cache: mincore over a private mapping (the kernel's own residency record)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    size, page = path.stat().st_size, mmap.PAGESIZE
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as region:
        buffer = (ctypes.c_char * size).from_buffer(region)
        vector = (ctypes.c_ubyte * ((size + page - 1) // page))()
        assert libc.mincore(ctypes.addressof(buffer), size, vector) == 0, ctypes.get_errno()
        del buffer
        return sum(v & 1 for v in vector)


def test_evict_cache_drops_every_file_under_the_folder_from_the_page_cache():
    spec = importlib.util.spec_from_file_location("floor", ROOT / "bench/floor.py")
    floor = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(floor)
    (ROOT / "bench/cache").mkdir(parents=True, exist_ok=True)  # the bench's own filesystem (a tmpfs /tmp keeps its pages)
    with tempfile.TemporaryDirectory(dir=ROOT / "bench/cache") as name:
        folder = Path(name)
        files = [folder / "a.bin", folder / "sub" / "b.bin"]
        files[1].parent.mkdir()
        for path in files:
            path.write_bytes(os.urandom(4 * 2**20))
        os.sync()  # dirty pages cannot be dropped
        floor.read_into_null([str(p) for p in files])
        assert all(_resident_pages(p) == 1024 for p in files)
        floor.evict_cache(folder)
        assert [_resident_pages(p) for p in files] == [0, 0]
        assert [p.stat().st_size for p in files] == [4 * 2**20] * 2  # the files themselves are untouched
