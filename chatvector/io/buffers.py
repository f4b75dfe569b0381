"""Scratch and output buffers reused across chunks, one set per thread: streaming allocates once, not per chunk."""
import threading

import torch


class _ThreadBuffers(threading.local):
    """One thread's buffers (key -> tensor) and which of its two output buffers is next, made on its first use."""

    def __init__(self):
        self.buffers: dict[tuple, torch.Tensor] = {}
        self.turn = 0


class Workspace:
    """Scratch tensors reused across chunks, so streaming allocates (and page-faults) once, not per chunk; each
    thread has its own (the stream's chunk workers compute side by side)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._mine = _ThreadBuffers()

    def output(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A host buffer for a finished chunk; two alternate, so one can be written while the next is computed."""
        self._mine.turn ^= 1
        return self.get(f"out{self._mine.turn}", shape, dtype, host=True)

    def result(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Where a chunk's result is computed: the next host output buffer on the CPU, a device buffer on a GPU."""
        return self.output(shape, dtype) if self.device.type == "cpu" else self.get("result", shape, dtype)

    def to_host(self, result: torch.Tensor) -> torch.Tensor:
        """A computed chunk in a host output buffer, ready for the writer."""
        if result.device.type == "cpu":
            return result
        return self.output(tuple(result.shape), result.dtype).copy_(result)

    def get(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, host: bool = False) -> torch.Tensor:
        device = torch.device("cpu") if host else self.device
        numel = 1
        for d in shape:
            numel *= d
        slot = (key, dtype, host)
        buffers = self._mine.buffers
        buffer = buffers.get(slot)
        if buffer is None or buffer.numel() < numel:
            pin = host and self.device.type == "cuda"
            buffer = torch.empty(max(numel, 1), dtype=dtype, device=device, pin_memory=pin)
            buffers[slot] = buffer
        return buffer[:numel].view(shape)

    def to_device(self, tensor: torch.Tensor, key: str) -> torch.Tensor:
        """The tensor where the arithmetic runs (a reused device buffer on CUDA; itself on the CPU)."""
        if tensor.device == self.device or self.device.type == "cpu":
            return tensor
        return self.get(key, tuple(tensor.shape), tensor.dtype).copy_(tensor, non_blocking=True)
