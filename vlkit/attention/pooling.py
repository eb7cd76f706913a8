"""Attention pooling: ``f(q) = Σ_i softmax_i(a(q, k_i)) v_i`` with any score function.

The three steps of attention (SPEC.md section 1) are kept separate: a *score* module
(:mod:`vlkit.attention.scoring`), the *alignment* (:func:`masked_softmax`) and the
*context* (weighted sum). :class:`Attention` composes them; the named subclasses fix the
score function.

Shape legend: ``b`` batch, ``m`` queries, ``n`` keys/values, ``d`` width.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from vlkit.attention.masking import masked_softmax
from vlkit.attention.scoring import (
    AdditiveScore,
    ConcatScore,
    DotProductScore,
    GeneralScore,
    ScaledDotProductScore,
)

__all__ = [
    "AdditiveAttention",
    "Attention",
    "AttentionOutput",
    "ConcatAttention",
    "DotProductAttention",
    "GeneralAttention",
    "ScaledDotProductAttention",
]


class AttentionOutput(NamedTuple):
    """Output of an attention layer.

    Attributes:
        context: ``(b, m, d_v)`` attended values.
        weights: ``(b, m, n)`` attention weights (rows sum to 1 over kept keys, 0 where
            masked, all 0 for fully masked rows).
    """

    context: Tensor
    weights: Tensor


class Attention(nn.Module):
    """Attention pooling with a pluggable score function (Bahdanau et al., ICLR 2015, arXiv:1409.0473).

    ``context_j = Σ_i α_ji v_i`` with ``α_j = masked_softmax(a(q_j, k_i))``.

    Args:
        score: a score module mapping ``(b, m, d_q), (b, n, d_k) -> (b, m, n)``.
        dropout: dropout probability on the weights, in ``[0, 1)`` (training only; the
            returned weights are the ones before dropout).

    Shapes:
        ``forward(query: (b, m, d_q), key: (b, n, d_k), value: (b, n, d_v),
        mask: (b, n) or (b, m, n) bool, True = attend) -> AttentionOutput``.

    Raises:
        ValueError: if key and value lengths differ, or the mask shape does not fit.
        TypeError: if the mask is not bool.
    """

    def __init__(self, score: nn.Module, dropout: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.score = score
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> AttentionOutput:
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"key (b, n, d_k) and value (b, n, d_v) must share b and n, got "
                f"{tuple(key.shape)} and {tuple(value.shape)}"
            )
        scores = self.score(query, key)  # (b, m, n)
        if mask is not None and mask.dim() == 2:
            mask = mask[:, None, :]  # (b, 1, n)
        weights = masked_softmax(scores, mask)  # (b, m, n)
        context = self.dropout(weights) @ value  # (b, m, d_v)
        return AttentionOutput(context, weights)


class DotProductAttention(Attention):
    """Attention with the dot-product score ``qᵀk`` (Luong et al., EMNLP 2015, arXiv:1508.04025).

    See :class:`Attention` for shapes and errors; query and key widths must match.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__(DotProductScore(), dropout)


class ScaledDotProductAttention(Attention):
    """Attention with the scaled dot-product score ``qᵀk/√d`` (Vaswani et al., NeurIPS 2017, arXiv:1706.03762).

    The single-head explicit form; :class:`vlkit.attention.MultiHeadAttention` is the
    multi-head layer with a fused kernel. See :class:`Attention` for shapes and errors.
    """

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__(ScaledDotProductScore(), dropout)


class GeneralAttention(Attention):
    """Attention with the general score ``qᵀWk`` (Luong et al., EMNLP 2015, arXiv:1508.04025).

    Args:
        query_dim: query width ``d_q``.
        key_dim: key width ``d_k`` (defaults to ``query_dim``).
        dropout: weight dropout in ``[0, 1)``.
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__(GeneralScore(query_dim, key_dim), dropout)


class AdditiveAttention(Attention):
    """Bahdanau (additive) attention ``w_vᵀ tanh(W_q q + W_k k)`` (Bahdanau et al., ICLR 2015, arXiv:1409.0473).

    Args:
        query_dim: query width ``d_q``.
        key_dim: key width ``d_k`` (may differ from ``d_q``).
        hidden_dim: width of the tanh layer.
        dropout: weight dropout in ``[0, 1)``.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__(AdditiveScore(query_dim, key_dim, hidden_dim), dropout)


class ConcatAttention(Attention):
    """Luong concat attention ``vᵀ tanh(W[q; k])`` (Luong et al., EMNLP 2015, arXiv:1508.04025).

    Args:
        query_dim: query width ``d_q``.
        key_dim: key width ``d_k``.
        hidden_dim: rows of ``W``.
        dropout: weight dropout in ``[0, 1)``.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__(ConcatScore(query_dim, key_dim, hidden_dim), dropout)
