"""The one interface every fusion layer shares: its output type, input checks, pooling and joins.

Every fusion is called as ``fusion(image: (b, n, d_v), image_mask: (b, n) bool | None,
text: (b, l, d_q), text_mask: (b, l) bool | None)`` (True = attend) and returns a
:class:`FusionOutput` whose ``fused`` vector is ``fusion.output_dim`` wide.

Shape legend: ``b`` batch, ``n`` image regions, ``l`` text tokens, ``d_v`` image width,
``d_q`` text width.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from vlkit.attention.masking import check_mask

__all__ = [
    "COMBINE_MODES",
    "FusionOutput",
    "check_fusion_inputs",
    "combined_dim",
    "masked_mean",
    "zero_padding",
]


class FusionOutput(NamedTuple):
    """Output of every fusion layer in :mod:`vlkit.fusion`.

    Attributes:
        fused: ``(b, output_dim)`` the joint vector a task head reads.
        image: ``(b, ·)`` the layer's one vector for the image (e.g. co-attention's ``v̂``),
            or None if the layer has none.
        text: ``(b, ·)`` the layer's one vector for the text (e.g. ``q̂``), or None.
        image_weights: ``(b, n)`` attention over image regions that made ``image`` (rows sum
            to 1 over kept regions, 0 where masked), or None if the layer pools uniformly.
        text_weights: ``(b, l)`` attention over text tokens, or None.
        image_tokens: ``(b, n, ·)`` per-region features after fusion (cross-modal and MCAN
            layers), or None.
        text_tokens: ``(b, l, ·)`` per-token features after fusion, or None.
        maps: further attention maps by name (e.g. ``"affinity"`` ``(b, l, n)``,
            ``"image_to_text"`` ``(b, n, l)``), or None.
    """

    fused: Tensor
    image: Tensor | None = None
    text: Tensor | None = None
    image_weights: Tensor | None = None
    text_weights: Tensor | None = None
    image_tokens: Tensor | None = None
    text_tokens: Tensor | None = None
    maps: dict[str, Tensor] | None = None


#: How a layer that ends with one image vector ``v`` and one text vector ``q`` joins them.
COMBINE_MODES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "sum": lambda v, q: v + q,  # Lu et al. 2016: q̂ + v̂
    "product": lambda v, q: v * q,  # Antol et al. 2015: element-wise product
    "concat": lambda v, q: torch.cat([v, q], dim=-1),
}


def combined_dim(combine: str, image_dim: int, text_dim: int) -> int:
    """Width of ``COMBINE_MODES[combine](v, q)`` for ``v: (b, image_dim)``, ``q: (b, text_dim)``.

    Raises:
        ValueError: an unknown mode (the message lists the valid ones), or ``sum``/``product``
            with different widths.
    """
    if combine not in COMBINE_MODES:
        raise ValueError(f"unknown combine mode {combine!r}; valid: {sorted(COMBINE_MODES)}")
    if combine == "concat":
        return image_dim + text_dim
    if image_dim != text_dim:
        raise ValueError(
            f"combine={combine!r} needs equal image and text widths, got {image_dim} and {text_dim}; "
            "use combine='concat' or encoders of the same width"
        )
    return image_dim


def check_fusion_inputs(
    image: Tensor,
    image_mask: Tensor | None,
    text: Tensor,
    text_mask: Tensor | None,
    image_dim: int,
    text_dim: int,
) -> None:
    """Check the shared fusion inputs.

    Raises:
        ValueError: ``image`` not ``(b, n, image_dim)``, ``text`` not ``(b, l, text_dim)``
            with the same ``b``, or a mask whose shape is not the sequence's ``(b, n)`` / ``(b, l)``.
        TypeError: a mask that is not bool.
    """
    if image.dim() != 3 or text.dim() != 3 or image.shape[0] != text.shape[0]:
        raise ValueError(
            f"image must be (b, n, d_v) and text (b, l, d_q) with the same b, got "
            f"{tuple(image.shape)} and {tuple(text.shape)}"
        )
    if image.shape[-1] != image_dim or text.shape[-1] != text_dim:
        raise ValueError(
            f"expected image width {image_dim} and text width {text_dim}, got "
            f"{image.shape[-1]} and {text.shape[-1]}; set image_dim/text_dim to match the encoders"
        )
    for name, mask, x in (("image_mask", image_mask, image), ("text_mask", text_mask, text)):
        check_mask(mask, name)
        if mask is not None and mask.shape != x.shape[:2]:
            raise ValueError(f"{name} must have shape {tuple(x.shape[:2])}, got {tuple(mask.shape)}")


def masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over the kept positions: ``(b, m, d), (b, m) bool | None -> (b, d)``.

    A row with no kept position gives zeros (never NaN).
    """
    if mask is None:
        return x.mean(1)
    total = zero_padding(x, mask).sum(1)  # (b, d); padding values never enter
    return total / mask.sum(1, keepdim=True).clamp(min=1).to(x.dtype)


def zero_padding(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the rows of padded positions: ``(b, m, ·), (b, m) bool | None -> (b, m, ·)``."""
    return x if mask is None else x.masked_fill(~mask[:, :, None], 0.0)
