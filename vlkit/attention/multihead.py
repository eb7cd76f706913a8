"""Multi-head attention, one class for self- and cross-attention.

Shape legend: ``b`` batch, ``m`` query positions, ``n`` key/value positions,
``h`` heads, ``dh`` per-head width (``dim / h``), ``d`` model width.

Two paths give the same output:
- fused: :func:`torch.nn.functional.scaled_dot_product_attention` (flash / memory-efficient
  kernels on GPU) when no attention weights are requested;
- explicit: scores, :func:`masked_softmax`, weighted sum, when ``need_weights=True``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from vlkit.attention.masking import check_mask, host_reads_are_free, masked_softmax

__all__ = ["MultiHeadAttention", "MultiHeadAttentionOutput"]


class MultiHeadAttentionOutput(NamedTuple):
    """Output of :class:`MultiHeadAttention`.

    Attributes:
        output: ``(b, m, d)`` attended, projected features.
        weights: ``(b, h, m, n)`` per-head attention weights when requested, else None.
    """

    output: Tensor
    weights: Tensor | None


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al., NeurIPS 2017, arXiv:1706.03762).

    ``head_i = softmax(W_i^q x (W_i^k c)ᵀ / √dh) W_i^v c``, output ``W_o [head_1; …; head_h]``,
    where the context ``c`` is ``x`` itself (self-attention) or another sequence
    (cross-attention, ``dim_context`` wide).

    Args:
        dim: model width ``d`` of the queries and of the output; divisible by ``num_heads``.
        num_heads: number of heads ``h`` (> 0).
        dim_context: width of the context sequence for cross-attention (default ``dim``).
        qkv_bias: whether the q/k/v projections have a bias.
        attn_drop: dropout on the attention weights, in ``[0, 1)``.
        proj_drop: dropout after the output projection, in ``[0, 1)``.
        alignment: an alignment module used instead of the global softmax, e.g.
            :class:`vlkit.attention.LocalMonotonicAlignment` (local attention, Luong et al.
            2015); it sees the scores ``(b, h, m, n)`` and, for local-p, the queries ``x``
            (so build :class:`vlkit.attention.LocalPredictiveAlignment` with ``query_dim=dim``).
            With an alignment the explicit path always runs.

    Shapes:
        ``forward(x: (b, m, d), context: (b, n, d_c) | None, mask: (b, n) or (b, m, n) bool
        (True = attend), causal: bool, need_weights: bool, query_positions: (m,) or (b, m)
        int | None, for local-m) -> MultiHeadAttentionOutput``.
        A query row whose mask is all False gets a zero context (its output is the output
        projection's bias), never NaN.

    Raises:
        ValueError: if ``dim`` is not divisible by ``num_heads``, or inputs have wrong shapes.
        TypeError: if the mask is not bool.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        dim_context: int | None = None,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        alignment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if num_heads <= 0 or dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        dim_context = dim if dim_context is None else dim_context
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim_context, dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim_context, dim, bias=qkv_bias)
        self.out_proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = nn.Dropout(proj_drop)
        self.alignment = alignment

    def _build_mask(
        self, mask: Tensor | None, causal: bool, b: int, m: int, n: int, device: torch.device
    ) -> Tensor | None:
        """Combine a padding/attention mask and the causal mask into ``(b, 1, m, n)``."""
        check_mask(mask)
        if mask is not None:
            if mask.dim() == 2:
                mask = mask[:, None, :]  # (b, 1, n)
            if mask.dim() != 3 or mask.shape[0] != b or mask.shape[1] not in (1, m) or mask.shape[-1] != n:
                raise ValueError(
                    f"mask must be (b, n) = ({b}, {n}) or (b, m, n) = ({b}, {m}, {n}), "
                    f"got {tuple(mask.shape)}"
                )
            mask = mask[:, None, :, :]  # (b, 1, m|1, n)
        if causal:
            tri = torch.ones(m, n, dtype=torch.bool, device=device).tril()
            mask = tri[None, None] if mask is None else mask & tri[None, None]
        return mask

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        need_weights: bool = False,
        query_positions: Tensor | None = None,
    ) -> MultiHeadAttentionOutput:
        context = x if context is None else context
        if x.dim() != 3 or context.dim() != 3 or x.shape[0] != context.shape[0]:
            raise ValueError(
                f"x must be (b, m, d) and context (b, n, d_c) with the same b, got "
                f"{tuple(x.shape)} and {tuple(context.shape)}"
            )
        if x.shape[-1] != self.dim or context.shape[-1] != self.k_proj.in_features:
            raise ValueError(
                f"expected x width {self.dim} and context width {self.k_proj.in_features}, got "
                f"{x.shape[-1]} and {context.shape[-1]}; set dim / dim_context to match"
            )
        b, m, n = x.shape[0], x.shape[1], context.shape[1]
        q = rearrange(self.q_proj(x), "b m (h dh) -> b h m dh", h=self.num_heads)
        k = rearrange(self.k_proj(context), "b n (h dh) -> b h n dh", h=self.num_heads)
        v = rearrange(self.v_proj(context), "b n (h dh) -> b h n dh", h=self.num_heads)
        attn_mask = self._build_mask(mask, causal, b, m, n, x.device)  # (b|1, 1, m|1, n)
        drop = self.attn_drop if self.training else 0.0

        weights, empty_rows = None, None
        if need_weights or self.alignment is not None:
            scores = q @ k.transpose(-1, -2) * self.head_dim**-0.5  # (b, h, m, n)
            if self.alignment is None:
                weights = masked_softmax(scores, attn_mask)
            else:
                weights = self.alignment(scores, attn_mask, x, query_positions)
            out = F.dropout(weights, drop, self.training) @ v  # (b, h, m, dh)
            weights = weights if need_weights else None
        else:
            if attn_mask is not None:
                # the fused kernel returns NaN for rows with nothing to attend: let them
                # attend everywhere, then zero their context below. The mask keeps its
                # broadcast shape (b, 1, m|1, n); the kernel broadcasts it over heads and rows.
                empty_rows = ~attn_mask.any(-1, keepdim=True)  # (b, 1, m|1, 1)
                attn_mask = attn_mask | empty_rows
                if host_reads_are_free(x) and not bool(empty_rows.any()):
                    empty_rows = None  # nothing to zero: skip the copy
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        out = rearrange(out, "b h m dh -> b m (h dh)")
        if empty_rows is not None:  # one copy, after the heads are merged
            out = out.masked_fill(rearrange(empty_rows, "b 1 m 1 -> b m 1"), 0.0)
        return MultiHeadAttentionOutput(self.proj_drop(self.out_proj(out)), weights)
