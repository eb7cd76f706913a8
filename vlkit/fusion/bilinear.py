"""Factorised bilinear pooling: MFB and MFH (Yu, Yu, Fan & Tao, ICCV 2017, arXiv:1708.01471;
Yu et al., IEEE TNNLS 2018, arXiv:1708.03619); equations in ``docs/mechanisms.md#mfb-and-mfh``.

MFB approximates a bilinear map ``z_i = xᵀ W_i y`` by rank-``k`` factors::

    z = SumPool(Uᵀx ⊙ Vᵀy, k)          (o outputs, each the sum of k consecutive products)
    z ← sign(z) · sqrt(|z|)            (power normalisation)
    z ← z / ‖z‖₂                        (L2 normalisation)

MFH stacks ``p`` MFB blocks: block ``i`` multiplies its expanded product by block ``i − 1``'s
before pooling, and the ``p`` normalised outputs are concatenated.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``o`` output width, ``k`` factor,
``g`` glimpses.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from vlkit.fusion.common import FusionOutput, check_fusion_inputs
from vlkit.fusion.mcan import AttentionalReduction

__all__ = ["MFB", "MFH", "MFBCoAttention", "MFBOutput", "signed_sqrt"]

# |z| + eps keeps the derivative of sqrt finite; sign(0) = 0 makes z = 0 map to 0 with zero gradient
_SQRT_EPS = 1e-12


def signed_sqrt(z: Tensor) -> Tensor:
    """Power normalisation ``sign(z)·sqrt(|z|)`` (within ``1e-6`` of it), finite gradient everywhere."""
    # sign(z) has zero gradient: taking it from a detached z spares autograd a full-size
    # product and a zero fill in the backward pass
    return z.detach().sign() * torch.sqrt(z.abs() + _SQRT_EPS)


def _l2_normalize(z: Tensor, eps: float = 1e-12) -> Tensor:
    """``z / max(‖z‖₂, eps)`` over the last dim: :func:`torch.nn.functional.normalize`'s result,
    dividing by the ``(..., 1)`` norm directly (``normalize`` divides by it expanded to ``z``'s
    shape, a slower full-size division and backward)."""
    return z / z.norm(dim=-1, keepdim=True).clamp_min(eps)


class MFBOutput(NamedTuple):
    """Output of :class:`MFB`.

    Attributes:
        output: ``(..., o)`` the power- and L2-normalised pooled vector.
        expanded: ``(..., k·o)`` the (dropped-out) product before pooling, which the next MFH
            block multiplies into its own.
    """

    output: Tensor
    expanded: Tensor


class MFB(nn.Module):
    """Multi-modal factorised bilinear pooling (Yu et al., ICCV 2017, arXiv:1708.01471, section 3).

    ``z = L2(signed_sqrt(SumPool(drop(Uᵀx ⊙ Vᵀy) [⊙ previous], k)))``.

    Args:
        x_dim: width of ``x``.
        y_dim: width of ``y``.
        output_dim: ``o`` (the paper's 1000).
        factor: ``k``, the rank of each output's factorisation (the paper's 5).
        dropout: dropout on the expanded product, in ``[0, 1)`` (the paper's 0.1).
        output_scale: ``s > 0``, multiplies the L2-normalised output (the paper's 1). A unit
            vector of width ``o`` has elements of size about ``1/sqrt(o)``, so a freshly
            initialised layer after it sees inputs ``sqrt(o)`` times smaller than unit-scale
            features and learns slowly; ``s = sqrt(o)`` gives elements of root-mean-square 1.
            The set of functions the model can represent is the same for every ``s`` (the next
            linear layer can absorb it); only the speed of learning changes.

    Shapes:
        ``forward(x: (..., x_dim), y: (..., y_dim), previous: (..., k·o) | None) ->
        MFBOutput``; the leading dimensions of ``x`` and ``y`` broadcast (e.g. regions
        ``(b, n, ·)`` with one question ``(b, 1, ·)``). Every ``output`` row has L2 norm
        ``output_scale`` (or is 0 if the pooled vector is 0).

    Raises:
        ValueError: ``output_dim`` or ``factor`` < 1, or ``output_scale`` <= 0.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        output_dim: int = 1000,
        factor: int = 5,
        dropout: float = 0.1,
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if output_dim < 1 or factor < 1:
            raise ValueError(f"output_dim and factor must be >= 1, got {output_dim} and {factor}")
        if not output_scale > 0:
            raise ValueError(f"output_scale must be > 0 (1 is the paper's unit norm), got {output_scale}")
        self.output_dim, self.factor, self.output_scale = output_dim, factor, output_scale
        self.x_proj = nn.Linear(x_dim, factor * output_dim)  # U
        self.y_proj = nn.Linear(y_dim, factor * output_dim)  # V
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, y: Tensor, previous: Tensor | None = None) -> MFBOutput:
        expanded = self.dropout(self.x_proj(x) * self.y_proj(y))  # (..., k·o)
        if previous is not None:
            expanded = expanded * previous
        pooled = expanded.unflatten(-1, (self.output_dim, self.factor)).sum(-1)  # SumPool: (..., o)
        output = _l2_normalize(signed_sqrt(pooled))
        return MFBOutput(output if self.output_scale == 1.0 else output * self.output_scale, expanded)


class MFH(nn.Module):
    """Multi-modal factorised high-order pooling (Yu et al., IEEE TNNLS 2018, arXiv:1708.03619, section 4).

    ``p`` cascaded :class:`MFB` blocks: ``e_1 = drop(U_1ᵀx ⊙ V_1ᵀy)``,
    ``e_i = e_{i−1} ⊙ drop(U_iᵀx ⊙ V_iᵀy)``; ``z_i`` = normalised SumPool of ``e_i``;
    output ``[z_1; …; z_p]``. ``order=1`` is MFB.

    Args:
        x_dim, y_dim, output_dim, factor, dropout, output_scale: as :class:`MFB` (per block).
        order: ``p`` (>= 1; the paper's 2).

    Shapes:
        ``forward(x: (..., x_dim), y: (..., y_dim)) -> (..., p·o)``; each of the ``p`` slices
        of width ``o`` has L2 norm ``output_scale``.

    Raises:
        ValueError: ``order < 1``, or bad MFB sizes.
    """

    def __init__(
        self,
        x_dim: int,
        y_dim: int,
        output_dim: int = 1000,
        factor: int = 5,
        order: int = 2,
        dropout: float = 0.1,
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if order < 1:
            raise ValueError(f"order must be >= 1, got {order}")
        self.output_dim = order * output_dim
        self.blocks = nn.ModuleList(
            MFB(x_dim, y_dim, output_dim, factor, dropout, output_scale) for _ in range(order)
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        outputs, previous = [], None
        for block in self.blocks:
            output, previous = block(x, y, previous)
            outputs.append(output)
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, -1)  # cat would copy one


class MFBCoAttention(nn.Module):
    """MFB (or MFH) with co-attention, the VQA model of Yu et al. (ICCV 2017, arXiv:1708.01471,
    section 4; IEEE TNNLS 2018, arXiv:1708.03619).

    1. question attention: ``q̂`` = attentional reduction of the tokens (``G_q`` glimpses,
       concatenated; MLP ``Linear``-ReLU-``Linear`` scores, as the paper's 1×1 convs);
    2. image attention: the scores of region ``i`` are read from ``MFH(v_i, q̂)``, and ``v̂``
       is the attentional reduction of the regions (``G_v`` glimpses);
    3. ``fused = MFH(v̂, q̂)``.

    ``order=1`` gives MFB, ``order=2`` MFH.

    Args:
        image_dim: width ``d_v`` of the regions.
        text_dim: width ``d_q`` of the tokens.
        hidden_dim: ``o``, the output width of each MFB block (the paper's 1000).
        dropout: dropout on MFB products and in the attention MLPs, in ``[0, 1)``.
        factor: ``k`` (the paper's 5).
        order: MFB blocks per MFH (1 = MFB, 2 = MFH).
        image_glimpses: ``G_v`` (the paper's 2).
        text_glimpses: ``G_q`` (the paper's 2).
        attention_dim: hidden width of the attention MLPs (the paper's 512).
        output_scale: the norm of each MFB block's output, in the region features the image
            attention scores and in ``fused`` (the paper's 1; see :class:`MFB`).

    Shapes:
        ``forward(image: (b, n, d_v), image_mask: (b, n) bool | None, text: (b, l, d_q),
        text_mask: (b, l) bool | None) -> FusionOutput`` with ``fused`` ``(b, order·o)``,
        ``image`` = ``v̂`` ``(b, G_v·d_v)``, ``text`` = ``q̂`` ``(b, G_q·d_q)``, ``image_weights``
        ``(b, n)`` and ``text_weights`` ``(b, l)`` (means over glimpses), and
        ``maps["image_glimpses"]`` ``(b, G_v, n)``, ``maps["text_glimpses"]`` ``(b, G_q, l)``.

    Raises:
        ValueError: bad sizes (``order``, glimpses, ``factor``, ``hidden_dim`` < 1) or wrongly
            shaped inputs.
        TypeError: a mask that is not bool.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        hidden_dim: int = 1000,
        dropout: float = 0.1,
        factor: int = 5,
        order: int = 1,
        image_glimpses: int = 2,
        text_glimpses: int = 2,
        attention_dim: int = 512,
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        self.image_dim, self.text_dim = image_dim, text_dim
        self.text_attention = AttentionalReduction(text_dim, attention_dim, text_glimpses, dropout=dropout)
        question_dim = text_glimpses * text_dim
        self.region_pooling = MFH(image_dim, question_dim, hidden_dim, factor, order, dropout, output_scale)
        self.image_attention = AttentionalReduction(
            image_dim, attention_dim, image_glimpses, dropout=dropout, score_dim=order * hidden_dim
        )
        self.pooling = MFH(
            image_glimpses * image_dim, question_dim, hidden_dim, factor, order, dropout, output_scale
        )
        self.output_dim = self.pooling.output_dim

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        check_fusion_inputs(image, image_mask, text, text_mask, self.image_dim, self.text_dim)
        text_vec, text_weights = self.text_attention(text, text_mask)  # q̂: (b, G_q·d_q), (b, G_q, l)
        region_scores = self.region_pooling(image, text_vec[:, None, :])  # MFH(v_i, q̂): (b, n, p·o)
        image_vec, image_weights = self.image_attention(image, image_mask, scores_from=region_scores)
        return FusionOutput(
            self.pooling(image_vec, text_vec),
            image_vec,
            text_vec,
            image_weights.mean(1),
            text_weights.mean(1),
            maps={"image_glimpses": image_weights, "text_glimpses": text_weights},
        )
