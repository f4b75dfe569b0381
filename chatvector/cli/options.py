"""The command-line boundary: the whole command line checked before any work, values typed, errors as `error: ...`.

Values are parsed with fire's own literal parser (`"['a','b']"`, `"{6:6}"`, `0.5`), but the command line
is read here, so that an unknown, repeated or ambiguous option stops the command before it starts
(fire itself runs the function first and complains about what it could not consume afterwards).
"""
import difflib
import inspect
import os
import re
import shlex
import signal
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union, get_args, get_origin

from ..errors import ChatVectorError

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


def as_ratio_grid(value: Any, count: int) -> list[list[float]]:
    """The sweep's points: "[0,0.5,1]" for one vector, "[[0.5,0.5],[1,0.5]]" (one ratio per vector in each) for several."""
    example = "\"[0,0.25,0.5,0.75,1]\"" if count == 1 else f"\"[{[0.5] * count},{[1.0] * count}]\""
    if value is None:
        if count == 1:
            return [[0.0], [0.25], [0.5], [0.75], [1.0]]
        raise ChatVectorError(f"{count} chat vectors need --ratios with one list per point, e.g. --ratios {example}")
    points = as_list(value, "--ratios")
    number = lambda r: isinstance(r, (int, float)) and not isinstance(r, bool)  # noqa: E731
    grid = [[p] if number(p) and count == 1 else list(p) if isinstance(p, (list, tuple)) else None for p in points]
    if not grid or any(g is None or len(g) != count or not all(map(number, g)) for g in grid):
        raise ChatVectorError(f"--ratios must list {'numbers' if count == 1 else f'lists of {count} numbers'} for "
                              f"{count} chat vector{'s' if count > 1 else ''}, e.g. --ratios {example}; got {value!r}")
    return [[float(r) for r in g] for g in grid]


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


class UsageError(ChatVectorError):
    """A malformed command line: exit status 2, as for any command-line tool."""


Main = Callable[..., None]
ExtraOptions = Callable[[], Mapping[str, Any]]  # name -> type (bool, int, float or Any), for a main that takes **options


def command_line() -> str:
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]])


def run(main: Main, extra_options: ExtraOptions | None = None) -> None:
    """Check the whole command line, then run `main`; user errors become one `error:` line, never a traceback."""
    from .. import interrupts

    interrupts.install_handler()  # first: Ctrl-C during start-up is one line and status 130
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so `finally` blocks remove partial outputs
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # our own messages, not config lint
    prog = os.path.basename(sys.argv[0])
    try:
        if any(a in ("-h", "--help") for a in sys.argv[1:]):
            print(help_text(main, prog, extra_options is not None))
            return
        main(**parse_command_line(main, sys.argv[1:], extra_options))
    except UsageError as e:
        sys.exit(_fail(f"{e} (see {prog} --help)", 2))
    except ChatVectorError as e:
        sys.exit(_fail(str(e), 1))
    except KeyboardInterrupt as e:
        sys.exit(_fail(str(e) or interrupts.MESSAGE, 130))
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        sys.exit(_fail(f"{e.strerror or e}{where}; check the path, its permissions and free disk space", 1))


def _fail(message: str, status: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return status


def parse_command_line(main: Main, argv: Sequence[str], extra_options: ExtraOptions | None = None) -> dict[str, Any]:
    """`main`'s keyword arguments from argv, or a UsageError naming the first problem (nothing has run yet)."""
    params = _params(main)
    positional = [p for p in params.values() if p.default is inspect.Parameter.empty]
    extras = dict(extra_options()) if extra_options else {}
    given: dict[str, Any] = {}
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        if token.startswith("--") and len(token) > 2:
            name, value = _option(token, tokens, params, extras)
            if name in given:
                raise UsageError(f"--{name} is given twice; give each option once")
            given[name] = value
        elif token.startswith("-") and not _is_number(token):
            raise UsageError(f"unknown option {token}; options are written --name value")
        else:
            slot = next((p for p in positional if p.name not in given), None)
            if slot is None:
                raise UsageError(f"unexpected argument {token!r}: all {len(positional)} positional arguments are already given")
            given[slot.name] = _value(slot.name.upper(), token, params[slot.name].annotation)
    missing = [p.name.upper() for p in positional if p.name not in given]
    if missing:
        raise UsageError(f"missing {', '.join(missing)}")
    return given


def _params(main: Main) -> dict[str, inspect.Parameter]:
    return {n: p for n, p in inspect.signature(main).parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}


def _option(token: str, tokens: list[str], params: dict, extras: dict) -> tuple[str, Any]:
    """One `--name value`, `--name=value`, `--flag` or `--noflag`; consumes its value from `tokens`."""
    name, has_value, value = token[2:].partition("=")
    name = name.replace("-", "_")
    kinds = dict(extras) | {n: p.annotation for n, p in params.items()}
    prefixes = [k[:-1] for k in kinds if k.endswith("*")]  # "vllm_*": any option of that prefix, checked by whoever takes it
    if name not in kinds and any(name.startswith(prefix) and len(name) > len(prefix) for prefix in prefixes):
        kinds[name] = Any
    if name not in kinds and name.startswith("no") and kinds.get(name[2:]) is bool and not has_value:
        return name[2:], False
    if name not in kinds:
        close = difflib.get_close_matches(name, list(kinds), n=1, cutoff=0.6)
        hint = f"; did you mean --{close[0]}?" if close else ""
        raise UsageError(f"unknown option --{name}{hint}")
    kind = kinds[name]
    if not has_value:
        at_end = not tokens or (tokens[0].startswith("--") and len(tokens[0]) > 2)
        if kind is bool and at_end:
            return name, True  # a bare --flag, as fire reads it
        if at_end:
            raise UsageError(f"--{name} needs a value")
        value = tokens.pop(0)
    return name, _value(f"--{name}", value, kind)


def _value(flag: str, raw: str, kind) -> Any:
    """Text and paths stay as typed; numbers, lists and dicts are parsed the way fire parses them."""
    from fire.parser import DefaultParseValue

    if _is_text(kind):
        return raw
    if "," in raw and not raw.strip()[:1] in ("[", "(", "{", "'", '"'):
        numbers = raw.replace(" ", "")
        hint = (f'"[{numbers.replace(",", ".")}]" for the decimal number or "[{numbers}]" for a list'
                if re.fullmatch(r"-?\d+,\d+", numbers) else f'"[{raw}]" (quoted, with brackets) for a list')
        raise UsageError(f"{flag} {raw} is ambiguous (a decimal comma, or a list without brackets?); write {flag} {hint}")
    value = DefaultParseValue(raw)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{flag} must be a whole number, got {raw!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"{flag} must be a number, got {raw!r}")
        value = float(value)
    return value


def _is_text(kind) -> bool:
    """`str` and `str | None` parameters take the text as typed (fire would turn "Hi, you" into a tuple)."""
    if kind is str:
        return True
    return get_origin(kind) in (Union, types.UnionType) and set(get_args(kind)) == {str, type(None)}


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def usage(main: Main, prog: str) -> str:
    positional = [n.upper() for n, p in _params(main).items() if p.default is inspect.Parameter.empty]
    return f"usage: {prog} {' '.join(positional)} [options]"


def help_text(main: Main, prog: str, takes_extras: bool = False) -> str:
    """Usage, the docstring's summary, and every argument and option with its default and meaning."""
    doc = inspect.getdoc(main) or ""
    summary = doc.split("\n\n")[0]
    meanings = _arg_docs(doc)
    rows: list[tuple[str, str]] = []
    for name, param in _params(main).items():
        meaning = meanings.get(name, "")
        if param.default is inspect.Parameter.empty:
            rows.append((name.upper(), meaning))
        else:
            default = "none" if param.default is None else str(param.default)
            rows.append((f"--{name}", f"{meaning} (default: {default})"))
    width = max(len(r[0]) for r in rows) + 2
    lines = [usage(main, prog), "", summary, ""]
    lines += [f"  {flag:<{width}}{meaning}" for flag, meaning in rows]
    if takes_extras:
        extra = meanings.get(next(n for n, p in inspect.signature(main).parameters.items() if p.kind is inspect.Parameter.VAR_KEYWORD), "")
        lines.append(f"  {'--<option>':<{width}}{extra}")
    lines += ["", "Booleans: --flag True|False (or --flag / --noflag). Lists and dicts are quoted: --ratio \"[0.5,0.5]\"."]
    return "\n".join(lines)


def _arg_docs(doc: str) -> dict[str, str]:
    """`name: meaning` lines of the docstring's Args section (continuation lines joined)."""
    meanings: dict[str, str] = {}
    current = None
    in_args = False
    for line in doc.splitlines():
        if line.strip() == "Args:":
            in_args = True
            continue
        if not in_args:
            continue
        match = re.match(r"^\s{4}(\w+): (.*)$", line)
        if match:
            current = match.group(1)
            meanings[current] = match.group(2).strip()
        elif current and line.startswith(" " * 8):
            meanings[current] += " " + line.strip()
    return meanings
