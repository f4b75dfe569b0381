"""The I/O floor: read the inputs and write as many bytes as the job writes, with no computation.

    python bench/floor.py kernel|python OUT_DIR OUT_BYTES INPUT...

`kernel` is the cheapest way the kernel can do it: inputs read with os.sendfile into /dev/null, the
output written with os.copy_file_range from an input into a fresh file on the same filesystem (what
`cp` does); no byte passes through Python. `python` reads and writes through one reused buffer, as a
Python program at best can.
"""
import os
import sys
from pathlib import Path

CHUNK = 16 * 2**20


def read_into_null(inputs: list[str]) -> None:
    """Read every input file in the kernel (sendfile into /dev/null): no byte passes through Python."""
    with open(os.devnull, "wb") as null:
        for path in inputs:
            with open(path, "rb") as f:
                size, offset = os.fstat(f.fileno()).st_size, 0
                while offset < size:
                    offset += os.sendfile(null.fileno(), f.fileno(), offset, size - offset) or size


def evict_cache(root: Path) -> None:
    """Drop every file under `root` from the page cache (clean pages: call after a sync). Without it, at the 3b
    preset (the trio and the outputs exceed this machine's page cache) a run's speed hung on what the previous jobs
    had left cached and whether it was clean: a kernel floor took 4.6-5.5 s inside the bench and 11.9-17.2 s
    alone after another job's output was removed, while extract ran 16.4-16.7 s in the same alternating rounds."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def kernel_floor(out_dir: str, out_bytes: int, inputs: list[str]) -> None:
    read_into_null(inputs)
    os.makedirs(out_dir, exist_ok=True)
    left, sources = out_bytes, iter(inputs * (1 + out_bytes // max(1, sum(os.path.getsize(p) for p in inputs))))
    with open(os.path.join(out_dir, "out.bin"), "wb") as out:
        while left > 0:
            with open(next(sources), "rb") as source:
                size, offset = os.fstat(source.fileno()).st_size, 0
                while left > 0 and offset < size:
                    n = os.copy_file_range(source.fileno(), out.fileno(), min(size - offset, left), offset)
                    if n == 0:
                        break
                    offset, left = offset + n, left - n


def python_floor(out_dir: str, out_bytes: int, inputs: list[str]) -> None:
    view = memoryview(bytearray(CHUNK))
    for path in inputs:
        with open(path, "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    os.makedirs(out_dir, exist_ok=True)
    left, source = out_bytes, open(inputs[0], "rb", buffering=0)
    with open(os.path.join(out_dir, "out.bin"), "wb", buffering=0) as out:
        while left > 0:
            n = source.readinto(view[: min(CHUNK, left)]) or 0
            if n == 0:
                source.seek(0)
                continue
            out.write(view[:n])
            left -= n
    source.close()


def expand(inputs: list[str]) -> list[str]:
    """A directory stands for its safetensors files (the vector that extract has just written)."""
    return [str(p) for i in inputs for p in (sorted(Path(i).glob("*.safetensors")) if Path(i).is_dir() else [Path(i)])]


if __name__ == "__main__":
    method, out_dir, out_bytes, *inputs = sys.argv[1:]
    {"kernel": kernel_floor, "python": python_floor}[method](out_dir, int(out_bytes), expand(inputs))
