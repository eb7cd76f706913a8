"""What every text encoder shares: the output type and the checks on token ids and masks.

Shape legend: ``b`` batch, ``l`` tokens, ``d`` output width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from vlkit.attention.masking import check_mask

__all__ = ["TextEncoderOutput", "check_token_ids"]


class TextEncoderOutput(NamedTuple):
    """Output of a text encoder.

    Attributes:
        features: ``(b, l, d)`` token features, zero at padded positions.
        mask: ``(b, l)`` bool, True for real tokens.
        weights: per-layer self-attention weights, each ``(b, h, l, l)``, when the encoder
            has attention and they were requested (``need_weights=True``); else None.
    """

    features: Tensor
    mask: Tensor
    weights: list[Tensor] | None = None


def check_token_ids(token_ids: Tensor, mask: Tensor | None, vocab_size: int) -> Tensor:
    """Validate ``(b, l)`` token ids and their mask; return the mask (``token_ids != 0`` if None).

    Raises:
        ValueError: non-2-D or float ids, ids outside ``[0, vocab_size)``, or a mask whose
            shape differs from the ids'.
        TypeError: non-bool mask.
        RuntimeError: ids outside ``[0, vocab_size)`` under :func:`torch.compile`, where the
            range is checked inside the graph (:func:`torch._assert_async`; reading it on the
            host would break the graph).
    """
    if token_ids.dim() != 2 or token_ids.is_floating_point():
        raise ValueError(
            f"token_ids must be an integer tensor (b, l), got {token_ids.dtype} {tuple(token_ids.shape)}"
        )
    if torch.compiler.is_compiling():
        in_range = ((token_ids >= 0) & (token_ids < vocab_size)).all()
        torch._assert_async(
            in_range, f"token ids must lie in [0, {vocab_size}); was the model built with this tokenizer?"
        )
    elif token_ids.numel() and (int(token_ids.min()) < 0 or int(token_ids.max()) >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}), got range "
            f"[{int(token_ids.min())}, {int(token_ids.max())}]; was the model built with this tokenizer?"
        )
    check_mask(mask)
    if mask is None:
        return token_ids != 0
    if mask.shape != token_ids.shape:
        raise ValueError(
            f"mask {tuple(mask.shape)} must have the shape of token_ids {tuple(token_ids.shape)}"
        )
    return mask
