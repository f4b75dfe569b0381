"""Turn fire's value-typed arguments into checked Python values, and errors into `error: ...`."""
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from .errors import ChatVectorError

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def as_bool(value: Any, flag: str) -> bool:
    """`--x=false` reaches us as the string 'false'; accept the unambiguous spellings only."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ChatVectorError(f"--{flag} must be True or False, got {value!r}")


def as_list(value: Any, flag: str) -> list:
    """A single value is a list of one; fire hands over a list, a tuple or a bare value."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        raise ChatVectorError(f"{flag} is not a well-formed list: {value!r}; write it like \"['a','b']\"")
    return [value]


def as_paths(value: Any, flag: str) -> list[str]:
    paths = as_list(value, flag)
    if not paths or not all(isinstance(p, (str, int, float)) and not isinstance(p, bool) for p in paths):
        raise ChatVectorError(f"{flag} must be a path or a list of paths, got {value!r}")
    return [str(p) for p in paths]


def as_ratios(value: Any, count: int) -> list[float]:
    """One ratio per chat vector; with no --ratio, one vector gets 1 and several are refused."""
    if value is None:
        if count == 1:
            return [1.0]
        raise ChatVectorError(f"{count} chat vectors need --ratio with one value each, e.g. --ratio \"{[round(1 / count, 3)] * count}\"")
    ratios = as_list(value, "--ratio")
    if not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratios):
        raise ChatVectorError(f"--ratio must be a number or a list of numbers, got {value!r}")
    if len(ratios) != count:
        raise ChatVectorError(f"--ratio has {len(ratios)} values for {count} chat vectors; give one ratio per chat vector")
    return [float(r) for r in ratios]


def as_token_map(value: Any) -> dict[int | str, int | str] | str:
    """`{cp_token: chat_token}` by id or token string, or the word 'auto'."""
    if value is None or value == {} or value == "":
        return {}
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if not isinstance(value, dict):
        raise ChatVectorError(
            f"--special_tokens_map must be a dict like \"{{128009:128009}}\" or \"{{'<|eot_id|>':'<|eot_id|>'}}\" or auto, got {value!r}"
        )
    for key, val in value.items():
        for token in (key, val):
            if isinstance(token, bool) or not isinstance(token, (int, str)):
                raise ChatVectorError(f"--special_tokens_map entries must be token ids or token strings, got {key!r}: {val!r}")
    return dict(value)


def command_line() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]])


def run(main: Callable[..., None]) -> None:
    """Run a fire `main`; user errors become one `error:` line and exit status 1, never a traceback."""
    import fire

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` blocks remove partial outputs
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # our own messages, not config lint
    try:
        fire.Fire(main)
    except ChatVectorError as e:
        sys.exit(_fail(str(e), 1))
    except KeyboardInterrupt:
        sys.exit(_fail("interrupted; nothing was written to the output path", 130))
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        sys.exit(_fail(f"{e.strerror or e}{where}; check the path, its permissions and free disk space", 1))


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status
