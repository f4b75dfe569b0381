"""The I/O floor: read the input files and write as many output bytes, with plain file copies."""
import os
import sys

CHUNK = 16 * 2**20


def main(out_dir: str, out_bytes: int, *inputs: str) -> None:
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
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


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
