"""The chat loop, apart from any model: history, `clear`, `exit`, end of input and Ctrl-C."""
import sys
from collections.abc import Callable

Message = dict[str, str]
HELP = "Type a message. 'clear' starts over, 'exit' or Ctrl-D quits, Ctrl-C stops a reply."


def chat_loop(reply: Callable[[list[Message]], str], read_line: Callable[[str], str], write: Callable[[str], None],
              system_prompt: str | None = None, prompt: str = "") -> list[Message]:
    """Run turns until `exit`, end of input or Ctrl-C at the prompt; returns the final history.

    `reply(history)` streams the answer itself and returns its text; Ctrl-C inside it drops that turn.
    """
    fresh = [{"role": "system", "content": system_prompt}] if system_prompt else []
    history = list(fresh)
    while True:
        try:
            line = read_line(prompt)
        except (EOFError, KeyboardInterrupt):
            write("\n" if prompt else "")
            return history
        text = line.strip()
        if not text:
            continue
        if text == "exit":
            return history
        if text == "clear":
            history = list(fresh)
            write("(history cleared)\n" if prompt else "")
            continue
        history.append({"role": "user", "content": text})
        try:
            answer = reply(history)
        except KeyboardInterrupt:
            history.pop()
            write("\n[reply stopped]\n")
            continue
        history.append({"role": "assistant", "content": answer})


def terminal_io(interactive: bool):
    """read_line/write/stats for a terminal (colours, prompt) or a pipe (plain lines, stats on stderr)."""
    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    if interactive:
        import readline  # noqa: F401  (line editing and history for input())

        stats = lambda text: write(f"\033[2m{text}\033[0m")  # noqa: E731
        return input, write, stats, "\033[1;32m>>> \033[0m"

    def read_line(_prompt: str) -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    return read_line, write, (lambda text: print(text, end="", file=sys.stderr, flush=True)), ""
