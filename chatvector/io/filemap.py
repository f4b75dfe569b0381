"""File regions as tensors, through mmap (read, or written in place) without a copy; and file bytes copied in the kernel."""
import errno
import mmap
import os
import threading
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: map every page in one call instead of one fault per page
_ROOM_MARGIN = 256 * 2**20  # free space left over even then: other writers, metadata
_quieting, _quieted = threading.Lock(), False  # see _first_read_only
_NO_COPY_FILE_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.ETXTBSY}


def mapped(fd: int, offset: int, nbytes: int, dtype: "torch.dtype", writable: bool = False) -> "torch.Tensor":
    """A flat tensor over bytes [offset, offset + nbytes) of an open file.

    The mapping lives as long as the tensor (and is unmapped with it), so only the pages of the chunks
    in use count in RSS. A read-only mapping must never be written: the caller owns that promise. A writable
    one (fd opened for writing) writes the file's page cache directly: see room_to_write_in_place first.
    """
    import torch  # here, not at the top: copy_range serves the head start, which runs before torch is imported

    if nbytes == 0:
        return torch.empty(0, dtype=dtype)
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
    flags = mmap.MAP_SHARED | (0 if writable else _POPULATE)  # populating maps pages read-only: each would fault again on its first write
    region = mmap.mmap(fd, offset + nbytes - start, flags=flags, prot=prot, offset=start)
    if writable or _quieted:
        return torch.frombuffer(region, dtype=dtype, offset=offset - start, count=nbytes // dtype.itemsize)
    return _first_read_only(region, dtype, offset - start, nbytes // dtype.itemsize)


def _first_read_only(region: mmap.mmap, dtype: "torch.dtype", offset: int, count: int) -> "torch.Tensor":
    """torch warns, once per process, that a read-only buffer gives a writable tensor (we never write it): silence
    that once, under a lock, since catch_warnings swaps process-wide state that other threads use."""
    import torch

    global _quieted
    with _quieting:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            tensor = torch.frombuffer(region, dtype=dtype, offset=offset, count=count)
        _quieted = True
    return tensor


def room_to_write_in_place(path, nbytes: int) -> bool:
    """Whether the filesystem holding `path` has nbytes free beyond a margin. A write through a mapping that needs
    new blocks (a copy-on-write filesystem, XFS or btrfs, shares a kernel copy's blocks with its source) and finds
    none kills the process with SIGBUS, where a write call reports ENOSPC: without the room, write calls it is."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize >= nbytes + _ROOM_MARGIN


def copy_range(source_fd: int, source_offset: int, target_fd: int, target_offset: int, nbytes: int) -> None:
    """Copy file bytes to another file in the kernel (copy_file_range, as `cp` does); pread/pwrite where it cannot."""
    done = 0
    while done < nbytes and hasattr(os, "copy_file_range"):
        try:
            n = os.copy_file_range(source_fd, target_fd, nbytes - done, source_offset + done, target_offset + done)
        except OSError as e:
            if e.errno not in _NO_COPY_FILE_RANGE:
                raise
            break
        if n == 0:
            raise EOFError("the source file ended early")
        done += n
    buffer = bytearray(min(nbytes - done, 16 * 2**20))
    while done < nbytes:
        n = os.preadv(source_fd, [memoryview(buffer)[: nbytes - done]], source_offset + done)
        if n == 0:
            raise EOFError("the source file ended early")
        done += os.pwrite(target_fd, memoryview(buffer)[:n], target_offset + done)
