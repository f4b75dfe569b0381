"""Output directories that appear only when complete: built in a hidden sibling, then moved into place.

Torch-free, so a command can check its output path and start writing before torch imports (headstart.py).
"""
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import ChatVectorError
from ..interrupts import cleanup_on_interrupt

_TMP_MARK = ".chatvector-partial-"


@contextmanager
def atomic_output_dir(output: Path, overwrite: bool, inputs: Sequence[Path], partial: Path | None = None) -> Iterator[Path]:
    """Yield a temporary sibling directory (`partial`, when one was made already); move it to `output` only if
    the block finishes."""
    output = Path(output).expanduser().absolute()
    check_output(output, overwrite, inputs)
    output.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(output.parent)
    with cleanup_on_interrupt():  # from here on Ctrl-C must unwind through the `finally` that removes tmp
        yield from _build_then_replace(output, partial or partial_dir(output))


def partial_dir(output: Path) -> Path:
    """A new hidden sibling of `output` to build it in, named so that a later run can tell it was ours."""
    output = Path(output).expanduser().absolute()
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}{_TMP_MARK}{os.getpid()}-", dir=output.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would make the result private
    return tmp


def _build_then_replace(output: Path, tmp: Path) -> Iterator[Path]:
    try:
        yield tmp
        if output.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}{_TMP_MARK}{os.getpid()}-old-", dir=output.parent))
            os.replace(output, old / "x")
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_output(output: Path, overwrite: bool, inputs: Sequence[Path]) -> None:
    real = Path(os.path.realpath(output))
    for source in inputs:
        source = Path(os.path.realpath(source))
        if real == source or source in real.parents or real in source.parents:
            raise ChatVectorError(f"output path {output} overlaps the input {source}; choose a new directory for the output")
    if output.exists() and not output.is_dir():
        raise ChatVectorError(f"output path {output} is a file; choose a directory path")
    if output.is_dir() and any(output.iterdir()) and not overwrite:
        raise ChatVectorError(f"output path {output} exists and is not empty; choose another path or pass --overwrite True")


def _remove_stale_partials(parent: Path) -> None:
    """Partial outputs of killed runs (their process is gone) in this folder, whatever their output's name,
    are removed; live runs' are left alone."""
    for path in parent.glob(f".*{_TMP_MARK}*"):
        pid = path.name.split(_TMP_MARK, 1)[1].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
