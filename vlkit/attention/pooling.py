"""Attention pooling: ``f(q) = Σ_i softmax_i(a(q, k_i)) v_i`` with any score function.

The three steps of attention (``docs/mechanisms.md#attention-as-pooling``) are kept separate: a
*score* module (:mod:`vlkit.attention.scoring`), the *alignment* (:func:`masked_softmax`) and the
*context* (weighted sum). :class:`Attention` composes them; the named subclasses fix the
score function.

Shape legend: ``b`` batch, ``m`` queries, ``n`` keys/values, ``d`` width.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from vlkit.attention.alignment import GlobalAlignment
from vlkit.attention.scoring import (
    AdditiveScore,
    ConcatScore,
    DotProductScore,
    GaussianKernelScore,
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
    "NadarayaWatsonAttention",
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

    ``context_j = Σ_i α_ji v_i`` with ``α_j = alignment(a(q_j, k_i))``; the alignment is
    the global masked softmax unless another is given (e.g. Luong's local-m / local-p,
    :mod:`vlkit.attention.alignment`).

    Args:
        score: a score module mapping ``(b, m, d_q), (b, n, d_k) -> (b, m, n)``.
        dropout: dropout probability on the weights, in ``[0, 1)`` (training only; the
            returned weights are the ones before dropout).
        alignment: module ``(scores, mask, query, query_positions) -> weights``; default
            :class:`vlkit.attention.GlobalAlignment`.

    Shapes:
        ``forward(query: (b, m, d_q), key: (b, n, d_k), value: (b, n, d_v),
        mask: (b, n) or (b, m, n) bool, True = attend, query_positions: (m,) or (b, m) int,
        used by local-m only) -> AttentionOutput``.

    Raises:
        ValueError: if key and value lengths differ, the mask shape does not fit, or
            ``dropout`` is outside ``[0, 1)``.
        TypeError: if the mask is not bool.
    """

    def __init__(self, score: nn.Module, dropout: float = 0.0, alignment: nn.Module | None = None) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.score = score
        self.alignment = GlobalAlignment() if alignment is None else alignment
        self.dropout = nn.Dropout(dropout)

    def align(
        self, query: Tensor, key: Tensor, mask: Tensor | None = None, query_positions: Tensor | None = None
    ) -> Tensor:
        """The attention weights ``(b, m, n)`` (score, then alignment) without the context step."""
        scores = self.score(query, key)  # (b, m, n)
        if mask is not None and mask.dim() == 2:
            mask = mask[:, None, :]  # (b, 1, n)
        return self.alignment(scores, mask, query, query_positions)  # (b, m, n)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        query_positions: Tensor | None = None,
    ) -> AttentionOutput:
        _check_key_value(key, value)
        weights = self.align(query, key, mask, query_positions)  # (b, m, n)
        context = self.dropout(weights) @ value  # (b, m, d_v)
        return AttentionOutput(context, weights)


def _check_key_value(key: Tensor, value: Tensor) -> None:
    if key.shape[:2] != value.shape[:2]:
        raise ValueError(
            f"key (b, n, d_k) and value (b, n, d_v) must share b and n, got "
            f"{tuple(key.shape)} and {tuple(value.shape)}"
        )


class DotProductAttention(Attention):
    """Attention with the dot-product score ``qᵀk`` (Luong et al., EMNLP 2015, arXiv:1508.04025).

    See :class:`Attention` for shapes, errors and the ``dropout`` / ``alignment`` arguments;
    query and key widths must match.
    """

    def __init__(self, dropout: float = 0.0, alignment: nn.Module | None = None) -> None:
        super().__init__(DotProductScore(), dropout, alignment)


class ScaledDotProductAttention(Attention):
    """Attention with the scaled dot-product score ``qᵀk/√d`` (Vaswani et al., NeurIPS 2017, arXiv:1706.03762).

    The single-head explicit form; :class:`vlkit.attention.MultiHeadAttention` is the
    multi-head layer with a fused kernel. See :class:`Attention` for shapes, errors and the
    ``dropout`` / ``alignment`` arguments.
    """

    def __init__(self, dropout: float = 0.0, alignment: nn.Module | None = None) -> None:
        super().__init__(ScaledDotProductScore(), dropout, alignment)


class GeneralAttention(Attention):
    """Attention with the general score ``qᵀWk`` (Luong et al., EMNLP 2015, arXiv:1508.04025).

    Args:
        query_dim: query width ``d_q``.
        key_dim: key width ``d_k`` (defaults to ``query_dim``).
        dropout: weight dropout in ``[0, 1)``.
        alignment: alignment module (default global softmax).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        dropout: float = 0.0,
        alignment: nn.Module | None = None,
    ) -> None:
        super().__init__(GeneralScore(query_dim, key_dim), dropout, alignment)


class AdditiveAttention(Attention):
    """Bahdanau (additive) attention ``w_vᵀ tanh(W_q q + W_k k)`` (Bahdanau et al., ICLR 2015, arXiv:1409.0473).

    Args:
        query_dim: query width ``d_q``.
        key_dim: key width ``d_k`` (may differ from ``d_q``).
        hidden_dim: width of the tanh layer.
        dropout: weight dropout in ``[0, 1)``.
        alignment: alignment module (default global softmax).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        hidden_dim: int,
        dropout: float = 0.0,
        alignment: nn.Module | None = None,
    ) -> None:
        super().__init__(AdditiveScore(query_dim, key_dim, hidden_dim), dropout, alignment)


class ConcatAttention(Attention):
    """Luong concat attention ``vᵀ tanh(W[q; k])`` (Luong et al., EMNLP 2015, arXiv:1508.04025).

    Args:
        query_dim: query width ``d_q``.
        key_dim: key width ``d_k``.
        hidden_dim: rows of ``W``.
        dropout: weight dropout in ``[0, 1)``.
        alignment: alignment module (default global softmax).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        hidden_dim: int,
        dropout: float = 0.0,
        alignment: nn.Module | None = None,
    ) -> None:
        super().__init__(ConcatScore(query_dim, key_dim, hidden_dim), dropout, alignment)


class NadarayaWatsonAttention(Attention):
    """Nadaraya–Watson kernel regression as attention pooling (Nadaraya, "On Estimating Regression",
    Theory of Probability and Its Applications 9(1), 1964; Watson, "Smooth Regression Analysis",
    Sankhyā Series A 26(4), 1964).

    ``f(x) = Σ_i softmax_i(−‖(x − x_i) ⊙ w‖² / 2) y_i``: a Gaussian kernel as the score
    (:class:`vlkit.attention.GaussianKernelScore`). Non-parametric when ``dim`` is None
    (``w = 1``); parametric, with a learnable bandwidth ``w`` per feature, when ``dim`` is
    given (for scalar inputs, ``dim = 1``, this is ``−((x − x_i) w)² / 2``).

    Args:
        dim: width of queries and keys for the parametric form; None for non-parametric.
        dropout: weight dropout in ``[0, 1)``.
        alignment: alignment module (default global softmax).

    Shapes: ``forward(query: (b, m, d), key: (b, n, d), value: (b, n, d_v), mask) ->
    AttentionOutput``; see :class:`Attention`.
    """

    def __init__(
        self, dim: int | None = None, dropout: float = 0.0, alignment: nn.Module | None = None
    ) -> None:
        super().__init__(GaussianKernelScore(dim), dropout, alignment)
