"""The README's commands run as written, and the package's dependency lists agree with each other."""
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, SCRIPT_ENV


def _demo_models(tmp_path) -> None:
    """What `make demo` builds before its first command, and the instruction switch's vector its sweep uses."""
    from chatvector import extract
    from tests.tiny_models import build_instruction_switch, build_trio

    build_trio(tmp_path / "demo_models", "llama")
    switch = build_instruction_switch(tmp_path / "demo_models" / "instruction_switch")
    extract(str(switch["base"]), str(switch["chat"]), str(tmp_path / "demo_models/instruction_switch/chat_vector"))


def test_the_readme_python_blocks_run_as_written(tmp_path):
    _demo_models(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    env = SCRIPT_ENV
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
        assert result.returncode == 0, f"{block}\n{result.stderr}"



def test_every_readme_command_on_the_demo_models_runs_as_written(tmp_path):
    """Each shell line of the README that runs a script on demo_models/, in the README's order, exits 0."""
    _demo_models(tmp_path)
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    commands = [line for line in lines if "demo_models/" in line and line.startswith(("python ", "printf "))]
    assert len(commands) >= 6, commands  # extract, add, two chats, the sweep, inspect at least
    env = {**SCRIPT_ENV, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    for command in commands:
        command = re.sub(r"\bpython (\w+\.py)", lambda m: f"python {ROOT / m.group(1)}", command)
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        assert result.returncode == 0 and "Traceback" not in result.stderr, f"{command}\n{result.stderr}"


def _requirements(path) -> set[str]:
    lines = (ROOT / path).read_text().splitlines()
    return {line.split("#")[0].strip() for line in lines if line.split("#")[0].strip() and not line.startswith("-r")}


def test_requirements_txt_lists_exactly_the_packages_dependencies():
    """pyproject.toml is the source; requirements.txt (kept for `pip install -r`) must not drift from it."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert _requirements("requirements.txt") == set(project["dependencies"])
    assert _requirements("requirements-dev.txt") == set(project["optional-dependencies"]["dev"])
