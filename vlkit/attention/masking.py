"""Masks and the masked softmax (the alignment step of attention).

Convention, used everywhere in vlkit: a mask is a ``torch.bool`` tensor with
**True = keep / attend** and False = padding / ignore.

Shape legend: ``b`` batch, ``m`` queries, ``n`` keys.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "broadcast_mask",
    "check_mask",
    "drop_full_mask",
    "host_reads_are_free",
    "lengths_to_mask",
    "masked_softmax",
]


def host_reads_are_free(x: Tensor) -> bool:
    """Whether reading a value of ``x``'s device on the host costs no synchronisation.

    True on the CPU in eager mode; False on accelerators (a read waits for the queued kernels)
    and while ``torch.compile`` or ``torch.export`` traces (a read would break the graph).
    """
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def drop_full_mask(mask: Tensor | None) -> Tensor | None:
    """None for a mask that keeps every position, where that is free to find out; else ``mask``.

    A mask of all True masks nothing, but every ``masked_fill`` over it still copies a tensor
    (an image encoder's region mask is all True). Checked only where host reads are free
    (:func:`host_reads_are_free`); elsewhere the mask is kept, which gives the same result.

    Args:
        mask: ``(b, m)`` bool (True = keep) or None.

    Returns:
        None when ``mask`` is None or (on the CPU, in eager mode) all True; else ``mask``.
    """
    if mask is None or not host_reads_are_free(mask) or not bool(mask.all()):
        return mask
    return None


def lengths_to_mask(lengths: Tensor, max_len: int | None = None) -> Tensor:
    """Turn valid lengths into a boolean padding mask.

    Args:
        lengths: ``(b,)`` integer tensor of valid lengths, each in ``[0, max_len]``.
        max_len: width of the mask; defaults to ``lengths.max()``.

    Returns:
        ``(b, max_len)`` bool mask, True for positions ``< lengths[i]``.

    Raises:
        ValueError: if ``lengths`` is not 1-D integer, is negative, or exceeds ``max_len``.
    """
    if lengths.dim() != 1 or lengths.is_floating_point():
        raise ValueError(
            f"lengths must be a 1-D integer tensor of shape (b,), got dtype {lengths.dtype} "
            f"and shape {tuple(lengths.shape)}"
        )
    if max_len is None:
        max_len = int(lengths.max().item()) if lengths.numel() else 0
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > max_len):
        raise ValueError(
            f"lengths must lie in [0, {max_len}], got min {int(lengths.min())} and max {int(lengths.max())}"
        )
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def check_mask(mask: Tensor | None, name: str = "mask") -> None:
    """Raise a clear error unless ``mask`` is None or a bool tensor.

    Raises:
        TypeError: if ``mask`` is a tensor of any dtype other than ``torch.bool``.
    """
    if mask is not None and mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a torch.bool tensor with True = attend, got dtype {mask.dtype}; "
            f"convert it with `{name}.bool()` (non-zero becomes True)"
        )


def broadcast_mask(mask: Tensor, scores: Tensor) -> Tensor:
    """Check a bool mask and expand it to the shape of ``scores`` (a view, no copy).

    Raises:
        TypeError: if ``mask`` is not bool.
        ValueError: if ``mask`` cannot be broadcast to ``scores``.
    """
    check_mask(mask)
    try:
        return mask.expand_as(scores)
    except RuntimeError as err:
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} cannot be broadcast to scores of shape "
            f"{tuple(scores.shape)}; pass (b, n) key masks as (b, 1, n)"
        ) from err


def masked_softmax(scores: Tensor, mask: Tensor | None = None, dim: int = -1) -> Tensor:
    """Softmax over ``dim`` that gives masked positions weight exactly 0.

    Used as the alignment step of every attention layer in vlkit (Bahdanau et al.,
    ICLR 2015; Vaswani et al., NeurIPS 2017). The softmax is computed in float32 and cast
    back (float64 stays float64), so it is stable under fp16/bf16 autocast.

    Args:
        scores: attention scores, any float dtype, e.g. ``(b, m, n)``.
        mask: bool tensor broadcastable to ``scores`` (e.g. ``(b, 1, n)``), True = keep.
            None means no masking (plain softmax).
        dim: the axis to normalise over (the key axis).

    Returns:
        Weights of the same shape and dtype as ``scores``: non-negative, summing to 1 over
        the kept positions of each row, exactly 0 at masked positions. A row whose mask
        is all False is all zeros (never NaN).

    Raises:
        TypeError: if ``mask`` is not a bool tensor.
        ValueError: if ``mask`` cannot be broadcast to ``scores``.
    """
    # at least float32 (fp16/bf16 are upcast, float64 stays float64)
    compute_dtype = torch.promote_types(scores.dtype, torch.float32)
    if mask is None:
        return torch.softmax(scores, dim=dim, dtype=compute_dtype).to(scores.dtype)
    mask = broadcast_mask(mask, scores)
    upcast = scores.to(compute_dtype).masked_fill(~mask, torch.finfo(compute_dtype).min)
    weights = torch.softmax(upcast, dim=dim)
    # zero masked positions explicitly: this also turns all-masked rows (uniform over
    # min values) into all-zero rows
    weights = weights.masked_fill(~mask, 0.0)
    return weights.to(scores.dtype)
