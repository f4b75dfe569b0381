"""File regions as tensors, through mmap, read without a copy; and file bytes copied in the kernel."""
import errno
import mmap
import os
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux: map every page in one call instead of one fault per page
_NO_COPY_FILE_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF, errno.ETXTBSY}


def mapped(fd: int, offset: int, nbytes: int, dtype: "torch.dtype") -> "torch.Tensor":
    """A flat tensor over bytes [offset, offset + nbytes) of an open file.

    The mapping lives as long as the tensor (and is unmapped with it), so only the pages of the chunks
    in use count in RSS. The mapping is read-only and must never be written: the caller owns that promise.
    """
    import torch  # here, not at the top: copy_range serves the head start, which runs before torch is imported

    if nbytes == 0:
        return torch.empty(0, dtype=dtype)
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    region = mmap.mmap(fd, offset + nbytes - start, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ, offset=start)
    with warnings.catch_warnings():  # torch warns that a read-only buffer gives a writable tensor: we never write it
        warnings.simplefilter("ignore", UserWarning)
        return torch.frombuffer(region, dtype=dtype, offset=offset - start, count=nbytes // dtype.itemsize)


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
