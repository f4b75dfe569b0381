"""Ctrl-C: quit at once while nothing is written; raise KeyboardInterrupt only where cleanup must run.

A KeyboardInterrupt raised while torch or transformers is importing can unwind through C++ code and
abort the process with a traceback (or `terminate called ...`). Until a command creates an output,
there is nothing to clean up, so the scripts' handler prints one line and exits 130 on the spot.
Inside `cleanup_on_interrupt()` (an output directory being built, a reply being generated) the
handler raises KeyboardInterrupt instead, so `finally` blocks remove partial results.
"""
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

MESSAGE = "interrupted; nothing was written to the output path"
_raise_depth = 0
_scratch: set[str] = set()  # written before any cleanup block (a head start's partial output): removed on the spot


def install_handler() -> None:
    """Installed explicitly, so Ctrl-C works even when the process inherited SIGINT ignored (a background job)."""
    signal.signal(signal.SIGINT, _on_interrupt)


def _on_interrupt(signum, frame) -> None:
    if _raise_depth:
        raise KeyboardInterrupt
    for path in list(_scratch):
        shutil.rmtree(path, ignore_errors=True)
    sys.stderr.write(f"\nerror: {MESSAGE}\n")
    sys.stderr.flush()
    os._exit(130)


def remove_on_exit(path) -> None:
    """A directory being written outside any cleanup block: the on-the-spot exit removes it."""
    _scratch.add(str(path))


def keep_on_exit(path) -> None:
    _scratch.discard(str(path))


@contextmanager
def cleanup_on_interrupt() -> Iterator[None]:
    """Within this block Ctrl-C raises KeyboardInterrupt (Python's default), so cleanup code runs."""
    global _raise_depth
    _raise_depth += 1
    try:
        yield
    finally:
        _raise_depth -= 1
