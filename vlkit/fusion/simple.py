"""Fusion without cross-attention: joint-embedding baselines and gated fusion (see ``docs/mechanisms.md``,
sections "Joint embeddings" and "Gated fusion").

Each modality is first reduced to one vector by its masked mean and projected into a shared
``k``-wide space, ``x = tanh(W_v v̄)``, ``y = tanh(W_q q̄)``; then

- joint embedding (Antol et al., ICCV 2015; Kiros et al. 2014): ``[x; y]``, ``x + y`` or
  ``x ⊙ y``;
- gated fusion (adaptive weighting, as the gated multimodal unit of Arevalo et al., ICLR
  workshop 2017, arXiv:1702.01992): ``g = σ(W_g[x; y])``, ``z = g ⊙ x + (1 − g) ⊙ y``.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``k`` hidden width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlkit.fusion.common import COMBINE_MODES, FusionOutput, check_fusion_inputs, combined_dim, masked_mean

__all__ = ["GatedFusion", "JointEmbedding"]


class _PooledProjection(nn.Module):
    """Masked means of both modalities projected into one ``k``-wide space with tanh."""

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.image_dim, self.text_dim = image_dim, text_dim
        self.image_proj = nn.Linear(image_dim, hidden_dim)  # W_v
        self.text_proj = nn.Linear(text_dim, hidden_dim)  # W_q
        self.dropout = nn.Dropout(dropout)

    def project(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        check_fusion_inputs(image, image_mask, text, text_mask, self.image_dim, self.text_dim)
        x = torch.tanh(self.image_proj(self.dropout(masked_mean(image, image_mask))))  # (b, k)
        y = torch.tanh(self.text_proj(self.dropout(masked_mean(text, text_mask))))  # (b, k)
        return x, y


class JointEmbedding(_PooledProjection):
    """Joint-embedding baseline: project both modalities into one space, then join them.

    ``x = tanh(W_v mean(V))``, ``y = tanh(W_q mean(Q))`` (masked means), ``fused = [x; y]``,
    ``x + y`` or ``x ⊙ y`` (the element-wise product of Antol et al., ICCV 2015,
    arXiv:1505.00468).

    Args:
        image_dim: width ``d_v`` of the regions.
        text_dim: width ``d_q`` of the tokens.
        hidden_dim: width ``k`` of the joint space.
        dropout: dropout on the pooled vectors before projection, in ``[0, 1)``.
        mode: ``"concat"``, ``"sum"`` or ``"product"``.

    Shapes:
        ``forward(image: (b, n, d_v), image_mask: (b, n) bool | None, text: (b, l, d_q),
        text_mask: (b, l) bool | None) -> FusionOutput`` with ``fused`` ``(b, 2k)`` for
        concat, else ``(b, k)``; ``image`` = ``x``, ``text`` = ``y`` ``(b, k)``.

    Raises:
        ValueError: an unknown ``mode`` (the message lists the valid ones) or wrongly shaped
            inputs.
        TypeError: a mask that is not bool.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        hidden_dim: int = 512,
        dropout: float = 0.0,
        mode: str = "product",
    ) -> None:
        super().__init__(image_dim, text_dim, hidden_dim, dropout)
        self.mode, self.output_dim = mode, combined_dim(mode, hidden_dim, hidden_dim)

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        x, y = self.project(image, image_mask, text, text_mask)
        return FusionOutput(COMBINE_MODES[self.mode](x, y), x, y)


class GatedFusion(_PooledProjection):
    """Gated fusion, adaptive weighting of the modalities (Arevalo, Solorio, Montes-y-Gómez & González,
    "Gated Multimodal Units for Information Fusion", ICLR workshop 2017, arXiv:1702.01992).

    ``x = tanh(W_v mean(V))``, ``y = tanh(W_q mean(Q))``, ``g = σ(W_g[x; y])``,
    ``fused = g ⊙ x + (1 − g) ⊙ y``: per feature, the gate decides how much comes from each
    modality.

    Args:
        image_dim: width ``d_v`` of the regions.
        text_dim: width ``d_q`` of the tokens.
        hidden_dim: width ``k`` of ``x``, ``y``, ``g`` and ``fused``.
        dropout: dropout on the pooled vectors before projection, in ``[0, 1)``.

    Shapes:
        ``forward(image: (b, n, d_v), image_mask: (b, n) bool | None, text: (b, l, d_q),
        text_mask: (b, l) bool | None) -> FusionOutput`` with ``fused``, ``image`` = ``x``,
        ``text`` = ``y`` and ``maps["gate"]`` = ``g``, all ``(b, k)``.

    Raises:
        ValueError: wrongly shaped inputs.
        TypeError: a mask that is not bool.
    """

    def __init__(self, image_dim: int, text_dim: int, hidden_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__(image_dim, text_dim, hidden_dim, dropout)
        self.output_dim = hidden_dim
        self.gate = nn.Linear(2 * hidden_dim, hidden_dim)  # W_g

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        x, y = self.project(image, image_mask, text, text_mask)
        gate = torch.sigmoid(self.gate(torch.cat([x, y], -1)))  # g: (b, k)
        return FusionOutput(gate * x + (1 - gate) * y, x, y, maps={"gate": gate})
