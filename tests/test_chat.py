"""chat.py: the loop's logic, end to end through pipes and a pseudo-terminal, in-memory chat vectors, stop ids."""
import fcntl
import os
import pty
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from chatvector import ChatVectorError, add
from chatvector.engines.hf import generation_options, load_chat_model, make_reply_fn, stop_ids
from chatvector.cli.repl import chat_loop
from tests.conftest import ROOT, SCRIPT_ENV, run_script


def _scripted(lines):
    feed = iter(lines)

    def read_line(_prompt):
        item = next(feed, EOFError)
        if isinstance(item, type) and issubclass(item, BaseException):
            raise item
        return item

    return read_line


def test_the_loop_keeps_history_clears_it_and_exits():
    seen, out = [], []

    def reply(history):
        seen.append([m["content"] for m in history])
        return f"answer {len(history)}"

    history = chat_loop(reply, _scripted(["hi", "  ", "again", "clear", "fresh", "exit", "never"]), out.append, "be brief")
    assert seen == [["be brief", "hi"], ["be brief", "hi", "answer 2", "again"], ["be brief", "fresh"]]
    assert [m["role"] for m in history] == ["system", "user", "assistant"]


@pytest.mark.parametrize("end", [EOFError, KeyboardInterrupt])
def test_end_of_input_and_ctrl_c_at_the_prompt_quit(end):
    replies = []
    history = chat_loop(lambda h: replies.append(h) or "ok", _scripted(["one", end, "two"]), lambda t: None)
    assert len(replies) == 1 and history[-1] == {"role": "assistant", "content": "ok"}


def test_ctrl_c_during_a_reply_drops_that_turn_and_returns_to_the_prompt():
    calls, out = [], []

    def reply(history):
        calls.append(len(history))
        if len(calls) == 1:
            raise KeyboardInterrupt
        return "done"

    history = chat_loop(reply, _scripted(["first", "second"]), out.append)
    assert calls == [1, 1]  # the interrupted turn is not in the history of the next one
    assert [m["content"] for m in history] == ["second", "done"] and "[reply stopped]" in "".join(out)


@pytest.mark.parametrize("arch, skip_embed, token_map", [("llama", False, {}), ("qwen2", False, {}), ("gpt_neox", False, {}),
                                                         ("llama", True, {6: 6, 3: 4})])
def test_chat_vector_in_memory_gives_the_logits_of_the_checkpoint_add_writes(arch, skip_embed, token_map, trios, vectors, tmp_path):
    out = add(str(trios[arch]["cp"]), [str(vectors[arch])], str(tmp_path / "o"), ratios=[0.5], skip_embed=skip_embed,
              special_tokens_map=token_map, device="cpu")
    model, _ = load_chat_model(str(trios[arch]["cp"]), "cpu", "auto", [str(vectors[arch])], [0.5], skip_embed, token_map)
    written = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.tensor([[1, 3, 20, 34, 50, 6, 4]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, written(ids).logits)


def test_a_model_without_chat_template_takes_the_vectors(trios, vectors):
    _, tokenizer = load_chat_model(str(trios["llama"]["cp"]), "cpu", "auto", [str(vectors["llama"])], [1.0])
    assert tokenizer.chat_template and "<|assistant|>" in tokenizer.chat_template
    with pytest.raises(ChatVectorError, match="has no chat template; use a chat model, pass --chat_vector"):
        load_chat_model(str(trios["llama"]["cp"]), "cpu")


def test_generation_stops_at_every_eos_id_of_the_generation_config(trios):
    model, tokenizer = load_chat_model(str(trios["llama"]["chat"]), "cpu")
    assert stop_ids(model, tokenizer) == [2, 6]  # generation config [6, 2] and the tokenizer's <|end|>
    for text in ("hello", "the quick brown fox", "how are you today", "a chat vector"):
        history = [{"role": "user", "content": text}]
        prompt = tokenizer.apply_chat_template(history, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        free = model.generate(**prompt, max_new_tokens=12, do_sample=False, eos_token_id=None)[0, prompt["input_ids"].shape[-1]:].tolist()
        # a token greedy decoding reaches at position k >= 1 before the tokenizer's eos and not earlier
        k = next((i for i in range(1, len(free)) if tokenizer.eos_token_id not in free[: i + 1] and free[i] not in free[:i]), None)
        if k is not None:
            break
    assert k is not None, "no prompt reaches a usable second stop id"
    unused = next(i for i in range(len(tokenizer)) if i not in free)
    model.generation_config.eos_token_id = [unused, free[k]]  # the reply must end at the *second* id
    timing = []
    reply = make_reply_fn(model, tokenizer, lambda t: None, timing.append, 12, generation_options({}))
    reply(history)
    assert timing[0].startswith(f"[{k + 1} tokens in ")


def test_streamed_text_is_whole_characters_and_equals_the_decoded_reply(trios):
    model, tokenizer = load_chat_model(str(trios["llama"]["chat"]), "cpu")
    generated = []
    original = model.generate
    model.generate = lambda **kw: generated.append(original(**kw)) or generated[-1]
    for text in ("今天", "你好 今天 天氣", "我們 去 公園", "很好"):  # a prompt this random model answers at length in CJK
        pieces, generated[:] = [], []
        history = [{"role": "user", "content": text}]
        reply = make_reply_fn(model, tokenizer, pieces.append, lambda t: None, 24, generation_options({}))(history)
        if len(reply) >= 8 and any(ord(c) > 127 for c in reply):
            break
    assert len(reply) >= 8 and any(ord(c) > 127 for c in reply), "no prompt gave a long multi-byte reply"
    prompt_len = tokenizer.apply_chat_template(history, add_generation_prompt=True, return_dict=True)["input_ids"].__len__()
    assert reply == tokenizer.decode(generated[0][0, prompt_len:], skip_special_tokens=True).strip()
    assert "".join(pieces).strip() == reply and "\ufffd" not in "".join(pieces)  # no broken multi-byte pieces
    assert len(pieces) > 1  # it streamed, not one piece at the end


def test_unknown_generation_options_are_refused_and_greedy_is_the_default():
    assert generation_options({"temperature": 0.7}) == {"do_sample": False, "temperature": 0.7}
    with pytest.raises(ChatVectorError, match="unknown generation option --temprature"):
        generation_options({"temprature": 0.7})


def test_piped_stdin_is_scriptable(trios, vectors, tmp_path):
    out = add(str(trios["llama"]["cp"]), [str(vectors["llama"])], str(tmp_path / "o"), device="cpu")
    result = run_script("chat.py", out, "--max_new_tokens", "6", "--sys_prompt", "be brief", input="hello\nclear\nhow are you\nexit\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 and "\033" not in result.stdout  # two plain replies
    assert result.stderr.count("tokens/s]") == 2
    one = run_script("chat.py", out, "--max_new_tokens", "6", "--prompt", "hello")
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 1
    missing = run_script("chat.py", trios["llama"]["cp"], "--prompt", "hello")
    assert missing.returncode == 1 and missing.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in missing.stderr


def _read_until(fd, done, timeout: float = 120) -> bytes:
    """Read the terminal until done(everything read so far) holds."""
    data, deadline = b"", time.time() + timeout
    while not done(data):
        assert time.time() < deadline, data
        if select.select([fd], [], [], 0.5)[0]:
            try:
                data += os.read(fd, 4096)
            except OSError:
                break
    return data


def _own_terminal() -> None:
    """Make the pty the child's controlling terminal, so Ctrl-C becomes SIGINT as in a real terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _wait_until_reading_the_terminal(pid: int, timeout: float = 30) -> None:
    """Wait until the process sleeps in select/poll, as it does once readline waits for a key.

    CPython's readline prints the prompt before it enters select() and checks signals only when select
    is interrupted: a Ctrl-C that lands between the two waits until input() returns (under load, 25 of
    60 presses made the instant the prompt appeared were lost so). A person never types that fast; the
    test waits as a person would. Where the kernel does not show wchan, a pause stands in for it.
    """
    proc = Path(f"/proc/{pid}")
    deadline = time.time() + timeout
    while time.time() < deadline:
        sleeping = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "S"
        where = (proc / "wchan").read_text() if (proc / "wchan").exists() else "0"
        if sleeping and ("poll" in where or "select" in where):
            return
        if sleeping and where == "0":  # a kernel that hides wchan
            time.sleep(1)
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} never waited for input")


def test_a_terminal_gets_a_coloured_prompt_and_ctrl_c_at_the_prompt_quits(trios, vectors, tmp_path):
    out = add(str(trios["llama"]["cp"]), [str(vectors["llama"])], str(tmp_path / "o"), device="cpu")
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, str(ROOT / "chat.py"), str(out), "--max_new_tokens", "6"], stdin=terminal,
                               stdout=terminal, stderr=terminal, env=SCRIPT_ENV, preexec_fn=_own_terminal)
    os.close(terminal)
    prompt = b"\033[1;32m>>> \033[0m"
    screen = _read_until(controller, lambda d: prompt in d)
    assert b"'clear' starts over" in screen
    os.write(controller, b"hello\r")
    screen = _read_until(controller, lambda d: b"tokens/s]" in d and d.endswith(prompt))
    assert b"\033[2m[" in screen  # the dimmed timing line, then the prompt again
    _wait_until_reading_the_terminal(process.pid)
    os.write(controller, b"\x03")  # Ctrl-C at the prompt
    assert process.wait(timeout=60) == 0
    os.close(controller)


def test_ctrl_c_stops_a_reply_even_when_chat_py_was_started_with_sigint_ignored(switch):
    """A background job of a shell script inherits SIGINT ignored; chat.py installs its handler itself."""
    import signal

    def ignoring_sigint_terminal():
        _own_terminal()
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    controller, terminal = pty.openpty()
    # ratio 0: the CP rambles, so the reply runs until it is stopped
    process = subprocess.Popen([sys.executable, str(ROOT / "chat.py"), str(switch["cp"]), "--chat_vector", f"['{switch['cv']}']",
                                "--ratio", "[0]", "--max_new_tokens", "100000"], stdin=terminal, stdout=terminal, stderr=terminal,
                               env=SCRIPT_ENV, preexec_fn=ignoring_sigint_terminal)
    os.close(terminal)
    prompt = b"\033[1;32m>>> \033[0m"
    try:
        _read_until(controller, lambda d: prompt in d)
        os.write(controller, "講個故事\r".encode())
        screen = _read_until(controller, lambda d: "我們會幫你處理這件事。".encode() in d)
        os.write(controller, b"\x03")  # Ctrl-C while the reply streams
        screen += _read_until(controller, lambda d: b"[reply stopped]" in d and d.endswith(prompt), timeout=30)
        os.write(controller, b"exit\r")
        assert process.wait(timeout=60) == 0, screen
    finally:
        process.kill()
        os.close(controller)
