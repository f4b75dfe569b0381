"""The weight arithmetic, on tensors only: accumulate wider than the output, round once."""
from collections.abc import Sequence

import torch


def accumulation_dtype(out_dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit outputs, float64 for float32 outputs: one rounding, at most 1 ulp from exact."""
    return torch.float64 if out_dtype.itemsize >= 4 else torch.float32


def subtract_into(acc: torch.Tensor, chat: torch.Tensor, base: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """acc = chat - base, in acc's dtype. Operands are widened into `scratch` first: torch's
    mixed-dtype kernels are about 10x slower than a conversion plus a same-dtype operation."""
    acc.copy_(chat)
    return acc.sub_(scratch.copy_(base))


def weighted_sum_into(acc: torch.Tensor, cp: torch.Tensor, vectors: Sequence[torch.Tensor], ratios: Sequence[float],
                      scratch: torch.Tensor) -> torch.Tensor:
    """acc = cp + sum_i ratios[i] * vectors[i], in acc's dtype (operands widened into `scratch`)."""
    acc.copy_(cp)
    for vector, ratio in zip(vectors, ratios, strict=True):
        if ratio != 0:
            acc.add_(scratch.copy_(vector), alpha=ratio)
    return acc


def chat_vector(base: torch.Tensor, chat: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The chat vector of one weight: chat - base, rounded once to `dtype` (default: chat's dtype)."""
    dtype = dtype or chat.dtype
    acc = torch.empty(chat.shape, dtype=accumulation_dtype(dtype), device=chat.device)
    return subtract_into(acc, chat, base, torch.empty_like(acc)).to(dtype)


def apply_chat_vectors(cp: torch.Tensor, vectors: Sequence[torch.Tensor], ratios: Sequence[float], dtype: torch.dtype | None = None) -> torch.Tensor:
    """cp + sum_i ratios[i] * vectors[i], rounded once to `dtype` (default: cp's dtype)."""
    dtype = dtype or cp.dtype
    acc = torch.empty(cp.shape, dtype=accumulation_dtype(dtype), device=cp.device)
    return weighted_sum_into(acc, cp, vectors, ratios, torch.empty_like(acc)).to(dtype)


def weighted_mean(rows: Sequence[torch.Tensor], ratios: Sequence[float], dtype: torch.dtype) -> torch.Tensor:
    """sum_i ratios[i] * rows[i] / sum_i ratios[i]: the chat models' rows for a transplanted token."""
    acc_dtype = accumulation_dtype(dtype)
    total = torch.zeros(rows[0].shape, dtype=torch.float64)
    for row, ratio in zip(rows, ratios, strict=True):
        total += ratio * row.to(torch.float64)
    return (total / sum(ratios)).to(acc_dtype)


class Workspace:
    """Scratch tensors reused across chunks, so streaming allocates (and page-faults) once, not per chunk."""

    def __init__(self, device: torch.device):
        self.device = device
        self._buffers: dict[tuple, torch.Tensor] = {}
        self._turn = 0

    def output(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A host buffer for a finished chunk; two alternate, so one can be written while the next is computed."""
        self._turn ^= 1
        return self.get(f"out{self._turn}", shape, dtype, host=True)

    def get(self, key: str, shape: tuple[int, ...], dtype: torch.dtype, host: bool = False) -> torch.Tensor:
        device = torch.device("cpu") if host else self.device
        numel = 1
        for d in shape:
            numel *= d
        slot = (key, dtype, host)
        buffer = self._buffers.get(slot)
        if buffer is None or buffer.numel() < numel:
            pin = host and self.device.type == "cuda"
            buffer = torch.empty(max(numel, 1), dtype=dtype, device=device, pin_memory=pin)
            self._buffers[slot] = buffer
        return buffer[:numel].view(shape)

    def to_device(self, tensor: torch.Tensor, key: str) -> torch.Tensor:
        """The tensor where the arithmetic runs (a reused device buffer on CUDA; itself on the CPU)."""
        if tensor.device == self.device or self.device.type == "cpu":
            return tensor
        return self.get(key, tuple(tensor.shape), tensor.dtype).copy_(tensor, non_blocking=True)
