"""Session fixtures: tiny model trios per architecture, their chat vectors, and exactness helpers."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

os.environ["HF_HUB_OFFLINE"] = "1"  # hermetic: nothing may come from the network
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
ROOT = Path(__file__).resolve().parents[1]

# The network is cut for the tests and every script they run (a sitecustomize on their path): only this machine's loopback
# answers (the judge's test server, vLLM's own sockets). A library that tries to fetch something fails loudly.
NETWORK_CUT = """
import socket

_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo
_LOCAL = ("localhost", "::1", "0.0.0.0", "", None)


def _local(host):
    return host in _LOCAL or isinstance(host, (bytes, bytearray)) or str(host).startswith("127.")


def _connect_locally(self, address):
    if self.family == socket.AF_INET or self.family == socket.AF_INET6:
        if not _local(address[0]):
            raise OSError(f"the tests cut the network: no connection to {address!r}")
    return _connect(self, address)


def _resolve_locally(host, *args, **kwargs):
    if not _local(host):
        raise OSError(f"the tests cut the network: no name lookup of {host!r}")
    return _getaddrinfo(host, *args, **kwargs)


socket.socket.connect, socket.getaddrinfo = _connect_locally, _resolve_locally
"""
OFFLINE_SITE = Path(tempfile.mkdtemp(prefix="chatvector-tests-offline-"))
(OFFLINE_SITE / "sitecustomize.py").write_text(NETWORK_CUT)
exec(NETWORK_CUT)  # this process too
SCRIPT_ENV = {**os.environ, "PYTHONPATH": f"{OFFLINE_SITE}{os.pathsep}{ROOT}"}

# One dtype per architecture so every storage dtype is exercised.
ARCHS = {"llama": torch.bfloat16, "qwen2": torch.float32, "gpt2": torch.float16, "gpt_neox": torch.bfloat16}


@pytest.fixture(scope="session")
def trios(tmp_path_factory) -> dict[str, dict[str, Path]]:
    from tests.tiny_models import build_trio

    root = tmp_path_factory.mktemp("trios")
    return {arch: build_trio(root / arch, arch, dtype) for arch, dtype in ARCHS.items()}


@pytest.fixture(scope="session")
def vectors(trios, tmp_path_factory) -> dict[str, Path]:
    from chatvector import extract

    root = tmp_path_factory.mktemp("vectors")
    return {arch: extract(str(t["base"]), str(t["chat"]), str(root / arch), device="cpu") for arch, t in trios.items()}


def load_weights(model_dir: Path, prefix: str = "model") -> dict[str, torch.Tensor]:
    """Every tensor of a directory, read with the safetensors library (the oracle for our reader/writer)."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob(f"{prefix}*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    state = {}
    for file in files:
        state.update(load_file(file) if file.suffix == ".safetensors" else torch.load(file, weights_only=True))
    return state


def _ordered(t: torch.Tensor) -> torch.Tensor:
    """Floats as integers whose order and differences count ulps (sign-magnitude -> two's complement)."""
    bits = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    i = t.contiguous().view(bits).to(torch.int64)
    sign_mask = 1 << (8 * t.element_size() - 1)
    return torch.where(i < 0, -(i & (sign_mask - 1)), i)


def assert_within_ulp(actual: torch.Tensor, truth64: torch.Tensor, ulps: int = 1, name: str = "",
                      magnitude: torch.Tensor | None = None) -> None:
    """actual is within `ulps` of the float64 ground truth rounded to actual's dtype.

    Where terms cancel (the result is far smaller than the terms), an ulp of the result is below the
    rounding of any accumulator, so there the bound is the accumulator's unit roundoff times the sum of
    the terms' magnitudes (`magnitude`): the textbook error bound of a floating-point sum.
    """
    expected = truth64.to(actual.dtype)
    assert actual.shape == expected.shape, name
    if not actual.numel():
        return
    distance = (_ordered(actual) - _ordered(expected)).abs()
    if magnitude is not None:
        roundoff = 2.0**-53 if actual.element_size() >= 4 else 2.0**-24  # float64 / float32 accumulation
        cancelled = (actual.double() - truth64).abs() <= 4 * roundoff * magnitude
        distance = torch.where(cancelled, torch.zeros_like(distance), distance)
    worst = distance.max().item()
    assert worst <= ulps, f"{name}: {worst} ulps from float64 ground truth"


def run_script(script: str, *args, **kwargs) -> subprocess.CompletedProcess:
    """A top-level script run as a user runs it, with the network cut."""
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], capture_output=True, text=True,
                          env=kwargs.pop("env", SCRIPT_ENV), timeout=kwargs.pop("timeout", 300), **kwargs)


@pytest.fixture(scope="session")
def switch(tmp_path_factory) -> dict[str, Path]:
    """The language-switch trio (tests/tiny_models.py) and its chat vector, under 'cv'."""
    from chatvector import extract
    from tests.tiny_models import build_language_switch

    root = tmp_path_factory.mktemp("switch")
    paths = build_language_switch(root)
    paths["cv"] = extract(str(paths["base"]), str(paths["chat"]), str(root / "cv"), device="cpu")
    return paths
