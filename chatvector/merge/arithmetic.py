"""The weight arithmetic, on tensors only: accumulate wider than the output, round once."""
import math
from collections.abc import Sequence

import torch

from ..io.buffers import Workspace


def accumulation_dtype(out_dtype: torch.dtype) -> torch.dtype:
    """float32 for 16-bit outputs, float64 for float32 outputs: one rounding, at most 1 ulp from exact."""
    return torch.float64 if out_dtype.itemsize >= 4 else torch.float32


BLOCK_NUMEL = 2**18  # elements per thread in a block of the float32 route: the accumulator stays in L2 or L3, and each call is long enough to share


def fusable(out_dtype: torch.dtype, *operands: torch.Tensor, ratio: float = 1.0) -> bool:
    """Whether one native kernel gives exactly the float32-accumulate-and-round-once result.

    torch's 16-bit `add(a, b, alpha)` computes in float32 and rounds once, but first rounds `alpha * b`
    to the 16-bit type (measured: 1 element in 155k differs at alpha 0.75). That product is exact when
    alpha is +-1, and in bfloat16 when alpha is a power of two (bfloat16 shares float32's exponent range;
    only values below 1e-38 would lose a bit). float32 outputs accumulate in float64, which no kernel does.
    """
    if not _all_16_bit(out_dtype, operands):
        return False
    if abs(ratio) == 1.0:
        return True
    return out_dtype == torch.bfloat16 and ratio != 0 and math.frexp(abs(ratio))[0] == 0.5


def scaled_add_kernel(out: torch.Tensor, *operands: torch.Tensor) -> bool:
    """Whether `cp + r * vector` (any r) has a one-pass kernel with the float32 route's bits: torch's CPU `addcmul`
    on 16-bit tensors computes in float32, `r * vector` rounded to float32, then the sum, then one rounding to
    16 bits, as `_accumulate_into` does (a test checks them bit for bit), in one pass instead of that route's
    three (widen, addcmul, round): 1.6 G elements/s on one thread against 0.9 for the route when it ran four
    kernels. The GPU takes the float32 route, whose separate kernels round the same way on every device."""
    return out.device.type == "cpu" and _all_16_bit(out.dtype, operands)


def _all_16_bit(out_dtype: torch.dtype, operands: Sequence[torch.Tensor]) -> bool:
    """Operands and output share one 16-bit dtype: what torch's native 16-bit kernels compute in float32."""
    return out_dtype.itemsize == 2 and all(t.dtype == out_dtype for t in operands)


def subtract_into(out: torch.Tensor, chat: torch.Tensor, base: torch.Tensor, workspace: Workspace) -> torch.Tensor:
    """out = chat - base, computed in float32 or wider and rounded once to out's dtype."""
    if fusable(out.dtype, chat, base):
        return torch.sub(chat, base, out=out)
    return _accumulate_into(out, chat, [base], [-1.0], workspace)


def weighted_sum_into(out: torch.Tensor, cp: torch.Tensor, vectors: Sequence[torch.Tensor], ratios: Sequence[float],
                      workspace: Workspace) -> torch.Tensor:
    """out = cp + sum_i ratios[i] * vectors[i], computed in float32 or wider and rounded once to out's dtype."""
    if len(vectors) == 1 and ratios[0] != 0:  # 0 * inf would be nan: ratio 0 is a copy, on the float32 route
        if fusable(out.dtype, cp, vectors[0], ratio=ratios[0]):
            return torch.add(cp, vectors[0], alpha=ratios[0], out=out)
        if scaled_add_kernel(out, cp, vectors[0]):
            return torch.addcmul(cp, vectors[0], torch.ones((), dtype=out.dtype), value=ratios[0], out=out)
    return _accumulate_into(out, cp, vectors, ratios, workspace)


def _accumulate_into(out: torch.Tensor, first: torch.Tensor, terms: Sequence[torch.Tensor], ratios: Sequence[float],
                     workspace: Workspace) -> torch.Tensor:
    """The general route: widen into a reused accumulator block by block, add each term scaled by its ratio, round
    once into out. Each term is scaled, then added, each step rounded to the accumulator's type: the same bits on
    every device (a fused multiply-add would round once, and only where the compiler chose it).

    On the CPU one `addcmul` per term does both steps on the narrow term, `acc + r * term * 1` with the same two
    roundings (a test checks the bits against numpy's separate operations). A GPU runs widen, scale and add as three
    kernels, since nvcc may fuse the multiply and add of one kernel. Blocks of BLOCK_NUMEL per thread keep the
    accumulator in cache and give every thread a share (a fixed 64K-element block ran at 0.98 G elements/s on 16
    threads, below one thread's 1.1: each kernel was too small to split). Both on a 2-core EPYC, two bf16 vectors:
    0.95-1.02 G elements/s on one thread and 1.75 on two, against 0.73-0.75 and 1.38-1.41 with three kernels a
    term in 128K blocks.
    """
    acc_dtype = accumulation_dtype(out.dtype)
    kept = [(t.reshape(-1), r) for t, r in zip(terms, ratios, strict=True) if r != 0]
    on_cpu = out.device.type == "cpu"
    step = BLOCK_NUMEL * torch.get_num_threads() if on_cpu else max(1, out.numel())  # a GPU wants one big kernel
    acc_block = workspace.get("acc", (min(step, out.numel()),), acc_dtype)
    one = torch.ones((), dtype=acc_dtype)
    blocks = [out.reshape(-1).split(step), first.reshape(-1).split(step), *(term.split(step) for term, _ in kept)]
    for out_block, first_block, *term_blocks in zip(*blocks, strict=True):
        acc = acc_block[: out_block.numel()].copy_(first_block)
        for term, (_, ratio) in zip(term_blocks, kept):
            if on_cpu and term.dtype.itemsize <= acc.dtype.itemsize:  # a wider term would make addcmul compute wider
                acc.addcmul_(term, one, value=ratio)
            else:
                scratch = workspace.get("scratch", (term.numel(),), acc_dtype).copy_(term)
                acc.add_(scratch if ratio == 1 else scratch.mul_(ratio))
        out_block.copy_(acc)
    return out


def chat_vector(base: torch.Tensor, chat: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The chat vector of one weight: chat - base, rounded once to `dtype` (default: chat's dtype)."""
    out = torch.empty(chat.shape, dtype=dtype or chat.dtype, device=chat.device)
    return subtract_into(out, chat, base, Workspace(chat.device))


def apply_chat_vectors(cp: torch.Tensor, vectors: Sequence[torch.Tensor], ratios: Sequence[float], dtype: torch.dtype | None = None) -> torch.Tensor:
    """cp + sum_i ratios[i] * vectors[i], rounded once to `dtype` (default: cp's dtype)."""
    out = torch.empty(cp.shape, dtype=dtype or cp.dtype, device=cp.device)
    return weighted_sum_into(out, cp, vectors, ratios, Workspace(cp.device))


def weighted_mean(rows: Sequence[torch.Tensor], ratios: Sequence[float], dtype: torch.dtype) -> torch.Tensor:
    """sum_i ratios[i] * rows[i] / sum_i ratios[i]: the chat models' rows for a transplanted token."""
    acc_dtype = accumulation_dtype(dtype)
    total = torch.zeros(rows[0].shape, dtype=torch.float64)
    for row, ratio in zip(rows, ratios, strict=True):
        total += ratio * row.to(torch.float64)
    return (total / sum(ratios)).to(acc_dtype)
