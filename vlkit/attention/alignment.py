"""Alignment functions: turn scores into attention weights, globally or in a local window.

The alignment is the second of the three steps of attention
(``docs/mechanisms.md#attention-as-pooling``): score, **alignment**, context. Every alignment
module has the same call, ``alignment(scores, mask, query, query_positions) -> weights``, so
any attention layer in vlkit (:class:`vlkit.attention.Attention` and its named subclasses,
:class:`LuongAttention`, :class:`MultiHeadAttention`, :class:`HardAttention`) takes one in place
of the global softmax.

| name       | weights                                                        | paper |
|------------|----------------------------------------------------------------|-------|
| ``global`` | softmax over all (unmasked) source positions                   | Luong et al., EMNLP 2015 |
| ``local_m``| softmax inside ``[p_t − D, p_t + D]`` with ``p_t = t``          | Luong et al., EMNLP 2015 |
| ``local_p``| windowed softmax × ``exp(−(s − p_t)² / 2σ²)``, ``σ = D/2``,     | Luong et al., EMNLP 2015 |
|            | ``p_t = S · sigmoid(v_pᵀ tanh(W_p h_t))``                       | |

Local weights are the windowed softmax *times* the Gaussian, exactly as in the paper, so
with local-p a row sums to at most 1 (to 1 when the Gaussian is flat over the window).

Shape legend: ``b`` batch, ``h`` heads (optional axis), ``m`` queries (target positions
``t``), ``n`` keys (source positions ``s``), ``d_q`` query width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlkit.attention.masking import broadcast_mask, masked_softmax

__all__ = [
    "ALIGNMENTS",
    "GlobalAlignment",
    "LocalMonotonicAlignment",
    "LocalPredictiveAlignment",
    "create_alignment",
]


def _key_mask(mask: Tensor | None, scores: Tensor) -> Tensor:
    """The mask broadcast to ``scores`` (all True when None)."""
    if mask is None:
        return torch.ones_like(scores, dtype=torch.bool)
    return broadcast_mask(mask, scores)


def _per_query(x: Tensor, scores: Tensor) -> Tensor:
    """Broadcast a ``(b, m, n)`` or ``(m, n)`` tensor against ``(b, m, n)`` or ``(b, h, m, n)`` scores."""
    if scores.dim() == 4 and x.dim() == 3:
        return x[:, None]  # (b, 1, m, n)
    return x


def _local_weights(scores: Tensor, keep: Tensor, centres: Tensor, half_width: int, gaussian: bool) -> Tensor:
    """Softmax inside the window ``|s − p_t| <= D``, times ``exp(−(s − p_t)² / 2σ²)``, ``σ = D/2``, if ``gaussian``.

    ``scores (b, [h,] m, n)``, ``keep`` the kept keys broadcast to ``scores``, ``centres`` the
    real positions ``p_t`` as ``(m,)`` or ``(b, m)`` in float32 or float64 (the dtype the
    window and the Gaussian are computed in). Returns weights in the dtype of ``scores``.
    """
    positions = torch.arange(scores.shape[-1], device=scores.device, dtype=centres.dtype)  # s: (n,)
    offsets = positions - centres[..., None]  # s − p_t: (..., m, n)
    weights = masked_softmax(scores, keep & _per_query(offsets.abs() <= half_width, scores))
    if not gaussian:
        return weights
    sigma = max(half_width / 2, 1e-6)
    factor = _per_query(torch.exp(-(offsets**2) / (2 * sigma**2)), scores)
    return (weights.to(centres.dtype) * factor).to(scores.dtype)


class GlobalAlignment(nn.Module):
    """Global alignment: masked softmax over all source positions (Luong et al., EMNLP 2015, arXiv:1508.04025).

    Shapes: ``forward(scores: (b, [h,] m, n), mask: bool broadcastable to scores | None,
    query: ignored, query_positions: ignored) -> weights`` of the shape and dtype of
    ``scores``; rows sum to 1 over kept keys, masked keys get exactly 0, all-masked rows are 0.

    Raises:
        TypeError: if the mask is not bool.
        ValueError: if the mask cannot be broadcast to the scores.
    """

    def forward(
        self,
        scores: Tensor,
        mask: Tensor | None = None,
        query: Tensor | None = None,
        query_positions: Tensor | None = None,
    ) -> Tensor:
        return masked_softmax(scores, mask)


class LocalMonotonicAlignment(nn.Module):
    """Local-m alignment (Luong, Pham & Manning, EMNLP 2015, arXiv:1508.04025, section 3.2).

    Query ``t`` attends only to source positions ``s`` with ``|s − p_t| <= D`` where
    ``p_t = t`` (monotonic alignment): a masked softmax inside the window. With
    ``gaussian=True`` the weights are also multiplied by ``exp(−(s − p_t)² / 2σ²)``,
    ``σ = D/2``, as local-p does.

    Args:
        window: half-width ``D`` of the window, in positions (>= 0).
        gaussian: multiply by the Gaussian centred on ``p_t`` (off in the paper's local-m).

    Shapes:
        ``forward(scores: (b, [h,] m, n), mask: bool broadcastable to scores | None,
        query: ignored, query_positions: (m,) or (b, m) int | None) -> weights`` of the
        shape and dtype of ``scores``. ``query_positions`` gives ``t`` for each query (in
        source positions); default ``0 … m−1``, which is right for self-attention and for
        decoders that see the whole target at once; a one-step decoder passes its ``t``.
        A query whose window holds no kept key gets all-zero weights.

    Raises:
        ValueError: negative ``window``, or ``query_positions`` of the wrong shape.
        TypeError: non-bool mask.
    """

    def __init__(self, window: int, gaussian: bool = False) -> None:
        super().__init__()
        if window < 0:
            raise ValueError(f"window (the half-width D) must be >= 0, got {window}")
        self.window, self.gaussian = window, gaussian

    def forward(
        self,
        scores: Tensor,
        mask: Tensor | None = None,
        query: Tensor | None = None,
        query_positions: Tensor | None = None,
    ) -> Tensor:
        m = scores.shape[-2]
        if query_positions is None:
            query_positions = torch.arange(m, device=scores.device)
        if query_positions.shape not in ((m,), (scores.shape[0], m)):
            raise ValueError(
                f"query_positions must be (m,) = ({m},) or (b, m) = ({scores.shape[0]}, {m}), "
                f"got {tuple(query_positions.shape)}"
            )
        centres = query_positions.to(torch.promote_types(scores.dtype, torch.float32))  # p_t: (m,) or (b, m)
        return _local_weights(scores, _key_mask(mask, scores), centres, self.window, self.gaussian)


class LocalPredictiveAlignment(nn.Module):
    """Local-p alignment (Luong, Pham & Manning, EMNLP 2015, arXiv:1508.04025, section 3.2).

    The model predicts where to look: ``p_t = S · sigmoid(v_pᵀ tanh(W_p h_t))`` with ``S``
    the source length (the number of kept keys of the row), then
    ``a_t(s) = softmax_window(score)(s) · exp(−(s − p_t)² / 2σ²)`` over the window
    ``|s − p_t| <= D``, ``σ = D/2``. ``W_p`` and ``v_p`` learn through the Gaussian factor.
    A window covering the whole sequence with a very wide Gaussian (``D`` much larger than
    ``n``) gives global attention.

    Args:
        query_dim: width ``d_q`` of the queries ``h_t``.
        window: half-width ``D`` of the window, in positions (> 0).
        hidden_dim: rows of ``W_p`` (default ``query_dim``).

    Shapes:
        ``forward(scores: (b, [h,] m, n), mask: bool broadcastable to scores | None,
        query: (b, m, d_q), query_positions: ignored) -> weights`` of the shape and dtype of
        ``scores``: non-negative, 0 at masked keys and outside the window, rows sum to <= 1.
        The predicted positions of the last call are kept in ``last_positions`` ``(b, m)``
        for inspection.

    Raises:
        ValueError: ``window <= 0``, a missing query or a query of the wrong shape.
        TypeError: non-bool mask.
    """

    def __init__(self, query_dim: int, window: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        if window <= 0:
            raise ValueError(f"window (the half-width D) must be > 0 for local-p, got {window}")
        self.window = window
        self.position_proj = nn.Linear(query_dim, hidden_dim or query_dim, bias=False)  # W_p
        self.position_score = nn.Linear(hidden_dim or query_dim, 1, bias=False)  # v_p
        self.last_positions: Tensor | None = None

    def forward(
        self,
        scores: Tensor,
        mask: Tensor | None = None,
        query: Tensor | None = None,
        query_positions: Tensor | None = None,
    ) -> Tensor:
        m = scores.shape[-2]
        if query is None or query.dim() != 3 or query.shape[:2] != (scores.shape[0], m):
            got = None if query is None else tuple(query.shape)
            raise ValueError(f"local-p predicts p_t from the queries: pass query (b, m, d_q), got {got}")
        keep = _key_mask(mask, scores)  # (b, [h,] m, n)
        # S: the kept keys of each query row (masks are shared by the heads): (b, m)
        source_len = (keep[:, 0] if keep.dim() == 4 else keep).sum(-1)
        compute_dtype = torch.promote_types(scores.dtype, torch.float32)
        # p_t is a real position in [0, S]: predict it in full precision even under autocast
        with torch.autocast(scores.device.type, enabled=False):
            hidden = torch.tanh(self.position_proj(query.to(self.position_proj.weight.dtype)))
            gate = torch.sigmoid(self.position_score(hidden)).to(compute_dtype)
        centres = source_len.to(compute_dtype) * gate.squeeze(-1)  # p_t: (b, m)
        self.last_positions = centres.detach()
        return _local_weights(scores, keep, centres, self.window, gaussian=True)


#: Alignment modules by name.
ALIGNMENTS: dict[str, type[nn.Module]] = {
    "global": GlobalAlignment,
    "local_m": LocalMonotonicAlignment,
    "local_p": LocalPredictiveAlignment,
}


def create_alignment(
    name: str, window: int | None = None, query_dim: int | None = None, hidden_dim: int | None = None
) -> nn.Module:
    """Build an alignment by name (a key of :data:`ALIGNMENTS`).

    Args:
        name: ``global``, ``local_m`` or ``local_p``.
        window: half-width ``D`` (needed by ``local_m`` and ``local_p``).
        query_dim: query width (needed by ``local_p``).
        hidden_dim: ``W_p`` rows for ``local_p`` (default ``query_dim``).

    Raises:
        ValueError: an unknown name (the message lists the valid ones) or a missing argument.
    """
    if name not in ALIGNMENTS:
        raise ValueError(f"unknown alignment {name!r}; valid names: {sorted(ALIGNMENTS)}")
    if name == "global":
        return GlobalAlignment()
    if window is None:
        raise ValueError(f"alignment {name!r} needs window (the half-width D)")
    if name == "local_m":
        return LocalMonotonicAlignment(window)
    if query_dim is None:
        raise ValueError("alignment 'local_p' predicts positions from the queries: pass query_dim")
    return LocalPredictiveAlignment(query_dim, window, hidden_dim)
