"""Attention score functions ``a(q, k)`` (equations: ``docs/mechanisms.md#score-functions``).

Every score module maps queries ``(b, m, d_q)`` and keys ``(b, n, d_k)`` to scores
``(b, m, n)``; the alignment (masked softmax) and the context (weighted sum) are applied by
:class:`vlkit.attention.Attention`, so any score function can be plugged into it.

| name          | ``a(q, k)``                       | paper                     |
|---------------|-----------------------------------|---------------------------|
| ``dot``       | ``qᵀk``                           | Luong et al., EMNLP 2015  |
| ``scaled_dot``| ``qᵀk / √d``                      | Vaswani et al., NeurIPS 2017 |
| ``general``   | ``qᵀ W k``                        | Luong et al., EMNLP 2015  |
| ``additive``  | ``w_vᵀ tanh(W_q q + W_k k)``      | Bahdanau et al., ICLR 2015 |
| ``concat``    | ``vᵀ tanh(W [q; k])``             | Luong et al., EMNLP 2015  |
| ``gaussian``  | ``−‖(q − k) ⊙ w‖² / 2``           | Nadaraya 1964; Watson 1964 |

Shape legend: ``b`` batch, ``m`` queries, ``n`` keys, ``d`` width.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = [
    "SCORE_FUNCTIONS",
    "AdditiveScore",
    "ConcatScore",
    "DotProductScore",
    "GaussianKernelScore",
    "GeneralScore",
    "ScaledDotProductScore",
    "create_score",
]


def _check_qk(query: Tensor, key: Tensor, same_width: bool) -> None:
    if query.dim() != 3 or key.dim() != 3:
        raise ValueError(
            f"query and key must be (b, m, d_q) and (b, n, d_k), got shapes "
            f"{tuple(query.shape)} and {tuple(key.shape)}"
        )
    if query.shape[0] != key.shape[0]:
        raise ValueError(f"query and key batch sizes differ: {query.shape[0]} vs {key.shape[0]}")
    if same_width and query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"this score needs query and key of the same width, got {query.shape[-1]} and "
            f"{key.shape[-1]}; use 'general', 'additive' or 'concat' for different widths"
        )


class DotProductScore(nn.Module):
    """Dot-product score ``a(q, k) = qᵀk`` (Luong, Pham & Manning, EMNLP 2015, arXiv:1508.04025).

    Shapes: ``forward(query: (b, m, d), key: (b, n, d)) -> (b, m, n)``.

    Raises:
        ValueError: on non-3-D inputs, mismatched batch or width.
    """

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        _check_qk(query, key, same_width=True)
        return query @ key.transpose(-1, -2)  # (b, m, n)


class ScaledDotProductScore(nn.Module):
    """Scaled dot-product score ``a(q, k) = qᵀk / √d`` (Vaswani et al., NeurIPS 2017, arXiv:1706.03762).

    Scaling by ``√d`` keeps the scores at unit variance for unit-variance inputs.

    Shapes: ``forward(query: (b, m, d), key: (b, n, d)) -> (b, m, n)``.

    Raises:
        ValueError: on non-3-D inputs, mismatched batch or width.
    """

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        _check_qk(query, key, same_width=True)
        return query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])  # (b, m, n)


class GeneralScore(nn.Module):
    """General (multiplicative) score ``a(q, k) = qᵀ W k`` (Luong et al., EMNLP 2015, arXiv:1508.04025).

    ``(q W) kᵀ`` or ``q (W kᵀ)``, whichever needs fewer multiply-adds: with many more queries
    than keys (image regions over words) projecting the keys is ~10× cheaper.

    Args:
        query_dim: width ``d_q`` of the queries (> 0).
        key_dim: width ``d_k`` of the keys (> 0); defaults to ``query_dim``.

    Shapes: ``forward(query: (b, m, d_q), key: (b, n, d_k)) -> (b, m, n)``.

    Raises:
        ValueError: on non-3-D inputs or mismatched batch sizes.
    """

    def __init__(self, query_dim: int, key_dim: int | None = None) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        self.weight = nn.Parameter(torch.empty(query_dim, key_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        _check_qk(query, key, same_width=False)
        (m, d_q), (n, d_k) = query.shape[-2:], key.shape[-2:]
        # the same product, in the cheaper order: project the shorter side through W
        if m * d_q * d_k + m * d_k * n <= n * d_q * d_k + m * d_q * n:
            return (query @ self.weight) @ key.transpose(-1, -2)  # (b, m, d_k) @ (b, d_k, n)
        return query @ (self.weight @ key.transpose(-1, -2))  # (b, m, d_q) @ (b, d_q, n)


class AdditiveScore(nn.Module):
    """Additive score ``a(q, k) = w_vᵀ tanh(W_q q + W_k k)`` (Bahdanau, Cho & Bengio, ICLR 2015, arXiv:1409.0473).

    Queries and keys may differ in width.

    Args:
        query_dim: width ``d_q`` of the queries.
        key_dim: width ``d_k`` of the keys.
        hidden_dim: width of the hidden layer ``W_q q + W_k k``.

    Shapes: ``forward(query: (b, m, d_q), key: (b, n, d_k)) -> (b, m, n)``; the hidden
    tensor is ``(b, m, n, hidden_dim)``.

    Raises:
        ValueError: on non-3-D inputs or mismatched batch sizes.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.query_proj = nn.Linear(query_dim, hidden_dim, bias=False)  # W_q
        self.key_proj = nn.Linear(key_dim, hidden_dim, bias=False)  # W_k
        self.score_proj = nn.Linear(hidden_dim, 1, bias=False)  # w_v

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        _check_qk(query, key, same_width=False)
        hidden = torch.tanh(
            self.query_proj(query)[:, :, None, :] + self.key_proj(key)[:, None, :, :]
        )  # (b, m, n, h)
        return self.score_proj(hidden).squeeze(-1)  # (b, m, n)


class ConcatScore(nn.Module):
    """Concat score ``a(q, k) = vᵀ tanh(W [q; k])`` (Luong et al., EMNLP 2015, arXiv:1508.04025).

    ``W`` is one ``hidden_dim × (d_q + d_k)`` matrix applied to the concatenation; it is
    evaluated as ``W[:, :d_q] q + W[:, d_q:] k`` so the ``(b, m, n, d_q + d_k)``
    concatenation is never materialised (the result is identical).

    Args:
        query_dim: width ``d_q`` of the queries.
        key_dim: width ``d_k`` of the keys.
        hidden_dim: rows of ``W``.

    Shapes: ``forward(query: (b, m, d_q), key: (b, n, d_k)) -> (b, m, n)``.

    Raises:
        ValueError: on non-3-D inputs or mismatched batch sizes.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.query_dim = query_dim
        self.proj = nn.Linear(query_dim + key_dim, hidden_dim, bias=False)  # W
        self.score_proj = nn.Linear(hidden_dim, 1, bias=False)  # v

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        _check_qk(query, key, same_width=False)
        w_q = self.proj.weight[:, : self.query_dim]  # (h, d_q)
        w_k = self.proj.weight[:, self.query_dim :]  # (h, d_k)
        hidden = torch.tanh((query @ w_q.T)[:, :, None, :] + (key @ w_k.T)[:, None, :, :])
        return self.score_proj(hidden).squeeze(-1)  # (b, m, n)


class GaussianKernelScore(nn.Module):
    """Gaussian-kernel score of Nadaraya–Watson kernel regression (Nadaraya, Theory of Probability and
    Its Applications 9(1), 1964; Watson, Sankhyā Series A 26(4), 1964).

    ``a(q, k) = −‖(q − k) ⊙ w‖² / 2``, so ``softmax_i a(q, k_i)`` is the normalised Gaussian
    kernel ``K(q − k_i)``. Non-parametric when ``dim`` is None (``w = 1``, the textbook
    ``α(x, x_i) = softmax_i(−(x − x_i)² / 2)``); parametric with a learnable bandwidth
    ``w ∈ R^dim`` (initialised to 1) otherwise: for ``dim = 1`` this is exactly
    ``−((x − x_i) w)² / 2`` (``docs/mechanisms.md#attention-as-pooling``); wider inputs get one
    bandwidth per feature. The distance is computed from the differences ``q − k``, so the score
    depends only on where the points are relative to each other, not on where the axis starts
    (the expanded ``‖q‖² + ‖k‖² − 2qᵀk`` loses every digit to cancellation in float32 once the
    inputs sit a few thousand away from 0).

    Args:
        dim: width of queries and keys for the parametric form; None for non-parametric.

    Shapes: ``forward(query: (b, m, d), key: (b, n, d)) -> (b, m, n)``, all ``<= 0``.

    Raises:
        ValueError: on non-3-D inputs, mismatched batch or width, or a width other than ``dim``.
    """

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim
        self.weight = None if dim is None else nn.Parameter(torch.ones(dim))  # w

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        _check_qk(query, key, same_width=True)
        if self.weight is not None:
            if query.shape[-1] != self.dim:
                raise ValueError(f"GaussianKernelScore was built for width {self.dim}, got {query.shape[-1]}")
            query, key = query * self.weight, key * self.weight
        # ‖q − k‖ from the differences q − k (torch.cdist's direct kernel, without materialising
        # (b, m, n, d)), not from ‖q‖² + ‖k‖² − 2 qᵀk, which cancels in float32 when the inputs sit
        # far from 0: shifting queries and keys together must not change a kernel regression
        dist = torch.cdist(query, key, compute_mode="donot_use_mm_for_euclid_dist")  # (b, m, n)
        return -dist.square() / 2


#: Score functions by their standard name.
SCORE_FUNCTIONS: dict[str, type[nn.Module]] = {
    "dot": DotProductScore,
    "scaled_dot": ScaledDotProductScore,
    "general": GeneralScore,
    "multiplicative": GeneralScore,
    "additive": AdditiveScore,
    "concat": ConcatScore,
    "gaussian": GaussianKernelScore,
}


def create_score(
    name: str, query_dim: int | None = None, key_dim: int | None = None, hidden_dim: int | None = None
) -> nn.Module:
    """Build a score function by name (a key of :data:`SCORE_FUNCTIONS`).

    Args:
        name: one of ``dot``, ``scaled_dot``, ``general`` (= ``multiplicative``),
            ``additive``, ``concat``, ``gaussian`` (Nadaraya–Watson kernel: non-parametric
            without ``query_dim``, a learnable bandwidth per feature with it).
        query_dim, key_dim, hidden_dim: widths needed by the parametric scores
            (``general`` needs ``query_dim``; ``additive``/``concat`` need all three,
            ``key_dim`` defaulting to ``query_dim`` and ``hidden_dim`` to ``query_dim``).

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or a missing width.
    """
    if name not in SCORE_FUNCTIONS:
        raise ValueError(f"unknown score function {name!r}; valid names: {sorted(SCORE_FUNCTIONS)}")
    cls = SCORE_FUNCTIONS[name]
    if cls in (DotProductScore, ScaledDotProductScore):
        return cls()
    if cls is GaussianKernelScore:
        return GaussianKernelScore(query_dim)
    if query_dim is None:
        raise ValueError(f"score function {name!r} has parameters: pass query_dim")
    key_dim = query_dim if key_dim is None else key_dim
    if cls is GeneralScore:
        return GeneralScore(query_dim, key_dim)
    return cls(query_dim, key_dim, query_dim if hidden_dim is None else hidden_dim)
