"""The whole command line is checked before any work; --help; Ctrl-C at any moment; the package installs."""
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chatvector.cli.options import UsageError, parse_command_line
from chatvector.cli.commands import add_main, chat_main, extract_main, generation_options, inspect_main, sweep_main
from tests.conftest import ROOT, SCRIPT_ENV, run_script

SCRIPTS = ["extract_chat_vector.py", "add_chat_vector.py", "chat.py"]
HELP_SCRIPTS = [*SCRIPTS, "inspect_chat_vector.py", "sweep_ratios.py"]


def _usage_error(result, message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def _kept(out: Path) -> None:
    assert (out / "model.safetensors").read_bytes() == b"good" and sorted(p.name for p in out.iterdir()) == ["model.safetensors"]


@pytest.fixture
def existing_output(tmp_path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"good")
    return out


def test_a_mistyped_add_option_stops_before_anything_is_written(trios, vectors, existing_output):
    result = run_script("add_chat_vector.py", trios["llama"]["cp"], vectors["llama"], existing_output, "--ratios", "0.5",
                        "--overwrite", "True")
    _usage_error(result, "unknown option --ratios; did you mean --ratio?")
    _kept(existing_output)


def test_a_mistyped_extract_option_stops_before_anything_is_written(trios, existing_output):
    result = run_script("extract_chat_vector.py", trios["llama"]["base"], trios["llama"]["chat"], existing_output,
                        "--dtpye", "float32", "--overwrite", "True")
    _usage_error(result, "unknown option --dtpye; did you mean --dtype?")
    _kept(existing_output)


def test_chat_generation_options_are_checked_before_the_model_is_looked_at():
    # the model path does not exist: an error about the option proves the option was checked first
    _usage_error(run_script("chat.py", "/nonexistent/model", "--temprature", "0.7"), "unknown option --temprature; did you mean --temperature?")
    _usage_error(run_script("chat.py", "/nonexistent/model", "--max_new_tokens", "many"), "--max_new_tokens must be a whole number")


@pytest.mark.parametrize("argv, message", [
    (["cp", "cv", "out", "--ratio", "0.5", "--ratio=1"], "--ratio is given twice"),
    (["cp", "cv", "out", "--ratio", "0,5"], '--ratio 0,5 is ambiguous (a decimal comma, or a list without brackets?); write --ratio "[0.5]"'),
    (["cp", "cv", "out", "--ratio", "0,5"], '"[0,5]" for a list'),
    (["cp", "a,b", "out"], "CHAT_VECTOR_PATH a,b is ambiguous"),
    (["cp", "cv"], "missing OUTPUT_PATH"),
    (["cp", "cv", "out", "extra"], "unexpected argument 'extra'"),
    (["cp", "cv", "out", "-r", "1"], "unknown option -r"),
    (["cp", "cv", "out", "--ratio"], "--ratio needs a value"),
    (["cp", "cv", "out", "--skip_embeddings", "True"], "did you mean --skip_embed?"),
])
def test_malformed_command_lines_are_usage_errors(argv, message):
    with pytest.raises(UsageError) as caught:
        parse_command_line(add_main, argv)
    assert message in str(caught.value)


def test_values_are_read_as_users_mean_them():
    args = parse_command_line(add_main, ["ckpt/cp,v2", "['a','b']", "out", "--ratio", "[0,5]", "--skip-embed", "--nooverwrite",
                                         "--special_tokens_map", "{6:6}", "--dtype=bfloat16"])
    assert args == {"cp_model_path": "ckpt/cp,v2", "chat_vector_path": ["a", "b"], "output_path": "out", "ratio": [0, 5],
                    "skip_embed": True, "overwrite": False, "special_tokens_map": {6: 6}, "dtype": "bfloat16"}
    assert parse_command_line(add_main, ["--cp_model_path", "cp", "cv", "out", "--ratio", "-0.5"])["ratio"] == -0.5
    assert parse_command_line(add_main, ["cp", "cv", "out", "--skip_embed", "false"])["skip_embed"] == "false"  # as_bool reads it
    chat = parse_command_line(chat_main, ["m", "--prompt", "Hello, world", "--sys_prompt", "[1,2]", "--temperature", "1",
                                          "--do_sample", "--max_new_tokens", "8"], generation_options)
    assert chat == {"model_path": "m", "prompt": "Hello, world", "sys_prompt": "[1,2]", "temperature": 1.0, "do_sample": True,
                    "max_new_tokens": 8}  # text stays text: fire alone would make ('Hello', 'world') and [1, 2]


@pytest.mark.parametrize("script", HELP_SCRIPTS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_exits_0_and_explains_every_option_with_its_default(script, flag):
    result = run_script(script, flag)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    main = {"extract_chat_vector.py": extract_main, "add_chat_vector.py": add_main, "chat.py": chat_main, "inspect_chat_vector.py": inspect_main,
            "sweep_ratios.py": sweep_main}[script]
    import inspect

    for name, param in inspect.signature(main).parameters.items():
        if param.kind is param.VAR_KEYWORD:
            assert "--<option>" in result.stdout and "GenerationConfig" in result.stdout
        elif param.default is param.empty:
            assert re.search(rf"^  {name.upper()}\s+\S", result.stdout, re.M), name
        else:
            line = next(line for line in result.stdout.splitlines() if line.startswith(f"  --{name} "))
            assert f"(default: {'none' if param.default is None else param.default})" in line, line
    assert "Type:" not in result.stdout and "Optional" not in result.stdout and "NAME" not in result.stdout


def test_help_on_a_terminal_prints_directly_with_no_pager():
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["PYTHONPATH"] = str(ROOT)
        os.execv(sys.executable, [sys.executable, str(ROOT / "add_chat_vector.py"), "--help"])
    output, deadline = b"", time.time() + 30
    while time.time() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and b"--special_tokens_map" in output


def _torch_is_loading(pid: int) -> bool:
    maps = Path(f"/proc/{pid}/maps")
    return maps.exists() and "/libtorch" in maps.read_text()


def _interrupt_during_start_up(args: list, delay: float, ignore_sigint: bool = False) -> subprocess.CompletedProcess:
    """Ctrl-C `delay` seconds after the process maps torch's libraries: inside the heavy imports.

    A fixed delay from launch is not a stage of start-up: under load the interpreter alone took 0.27 s,
    and a Ctrl-C before the scripts' handler is installed is Python's own KeyboardInterrupt (8 of 20
    at 0.1 s). torch is imported only after the command line is checked, so its libraries mark a
    moment after the handler is in place, wherever the machine's speed puts it.
    """
    env = SCRIPT_ENV
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    process = subprocess.Popen([sys.executable, *map(str, args)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env, preexec_fn=preexec)
    deadline = time.time() + 120
    while not _torch_is_loading(process.pid):
        assert time.time() < deadline and process.poll() is None, "the script ended before it imported torch"
        time.sleep(0.005)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("delay", [0, 0.2, 0.5])
@pytest.mark.parametrize("script", SCRIPTS)
def test_ctrl_c_during_start_up_is_one_line_and_status_130(script, delay, trios, vectors, tmp_path):
    llama = trios["llama"]
    args = {"extract_chat_vector.py": [llama["base"], llama["chat"], tmp_path / "out"],
            "add_chat_vector.py": [llama["cp"], vectors["llama"], tmp_path / "out"],
            "chat.py": [llama["chat"]]}[script]
    result = _interrupt_during_start_up([ROOT / script, *args], delay, ignore_sigint=script == "chat.py")
    if result.returncode == 0 and script != "chat.py":
        pytest.fail(f"{script} finished within {delay} s of loading torch; the test needs a slower start")
    assert result.returncode == 130, result.stderr
    assert [line for line in result.stderr.splitlines() if line.strip()] == ["error: interrupted; nothing was written to the output path"]
    assert not list(tmp_path.iterdir())


def test_ctrl_c_while_writing_removes_the_partial_output(trios, vectors, tmp_path):
    from tests.test_cli import SLOW_WRITER

    env = SCRIPT_ENV
    process = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(ROOT / "add_chat_vector.py"), str(trios["llama"]["cp"]),
                                str(vectors["llama"]), str(tmp_path / "out")], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list(tmp_path.glob(".out.chatvector-partial-*/model*.safetensors")):
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and stderr.strip().splitlines()[-1].startswith("error: interrupted"), stderr
    assert "Traceback" not in stderr and not list(tmp_path.iterdir())


def test_the_package_installs_with_pip_and_its_entry_points_run(tmp_path):
    import shutil

    source, target = tmp_path / "src", tmp_path / "site"  # a copy: building writes build/ and *.egg-info into the source
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "cache", "results", "demo_models", "build", "*.egg-info",
                                                                "__pycache__", ".whl", ".pytest_cache"))
    isolation = ["--no-build-isolation"] if _has_setuptools() else []  # offline-safe where setuptools is present
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", *isolation, "--target", str(target), str(source)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    outside = subprocess.run([sys.executable, "-c", "import chatvector, sys; print(chatvector.__file__); print(sorted(chatvector.__all__))"],
                             capture_output=True, text=True, cwd=tmp_path, env=env)
    assert outside.returncode == 0 and str(target) in outside.stdout, outside.stderr
    for command in ("chatvector-extract", "chatvector-add", "chatvector-chat", "chatvector-inspect", "chatvector-sweep"):
        ran = subprocess.run([str(target / "bin" / command), "--help"], capture_output=True, text=True, cwd=tmp_path, env=env)
        assert ran.returncode == 0 and ran.stdout.startswith(f"usage: {command} "), ran.stderr
    code = ("from chatvector.evaluation.prompts import load_prompts, load_safety_prompts; "
            "print(len(load_prompts('builtin', 'ko')), len(load_safety_prompts('builtin', 'ko')))")
    data = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert data.stdout.strip() == "50 113", data.stderr  # the prompt sets ship as package data


def _has_setuptools() -> bool:
    import importlib.util

    return importlib.util.find_spec("setuptools") is not None


def test_a_finished_run_prints_one_summary_line(trios, tmp_path):
    result = run_script("extract_chat_vector.py", trios["llama"]["base"], trios["llama"]["chat"], tmp_path / "cv")
    assert result.returncode == 0
    assert re.fullmatch(rf"wrote chat vector {re.escape(str(tmp_path / 'cv'))}: [\d.]+ MB, 1 shard, in [\d.]+ s", result.stderr.strip())


def test_the_vector_records_what_the_user_typed_not_local_paths(trios, tmp_path):
    llama = trios["llama"]
    result = run_script("extract_chat_vector.py", os.path.relpath(llama["base"], tmp_path), os.path.relpath(llama["chat"], tmp_path), "cv",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "cv" / "chat_vector.json").read_text()
    meta = json.loads(text)
    assert meta["base_model"] == os.path.relpath(llama["base"], tmp_path) and meta["base_model_revision"] is None
    assert str(llama["base"].parent) not in text and str(tmp_path) not in text


@pytest.mark.parametrize("path", ["./missing", "/abs/missing", "{existing}/missing"])
def test_a_missing_local_path_is_a_missing_directory_not_a_hub_miss(path, vectors, tmp_path):
    path = path.format(existing=tmp_path)
    result = run_script("add_chat_vector.py", path, vectors["llama"], tmp_path / "out", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: CP model {path} does not exist: no such directory; check the path"


def test_extracting_a_model_from_itself_warns_that_the_vector_is_zero(trios, tmp_path):
    base = trios["llama"]["base"]
    result = run_script("extract_chat_vector.py", base, base, tmp_path / "cv")
    assert result.returncode == 0 and "warning: the chat vector is all zeros" in result.stderr


def test_partial_outputs_of_dead_runs_are_removed_whatever_their_name(trios, vectors, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = tmp_path / f".another-name.chatvector-partial-{dead.pid}-x"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    live = tmp_path / f".other.chatvector-partial-{os.getpid()}-y"
    live.mkdir()
    assert run_script("add_chat_vector.py", trios["llama"]["cp"], vectors["llama"], tmp_path / "out").returncode == 0
    assert not stale.exists() and live.exists()


def test_make_installs_the_cpu_torch_build_first_where_no_torch_is_present():
    # a python without torch: `make -n` prints what install would run, without running it
    plan = subprocess.run(["make", "-n", "install", "PYTHON=python-without-torch"], capture_output=True, text=True, cwd=ROOT)
    assert plan.returncode == 0, plan.stderr
    lines = plan.stdout.replace("\\\n", " ").splitlines()  # join the recipe's continued lines
    torch_line = next(line for line in lines if "pip install" in line and "torch==" in line)
    cpu_first, fallback = torch_line.split("||")[1:3]
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu_first and "--timeout" in cpu_first
    assert "index-url" not in fallback and "torch==" in fallback
    assert torch_line.startswith("python-without-torch -c \"import torch\"")  # an existing torch (CUDA) is kept
