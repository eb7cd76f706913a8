"""Pre-norm Transformer encoder and decoder blocks, built on vlkit's :class:`MultiHeadAttention`.

Shape legend: ``b`` batch, ``l`` tokens, ``n`` context positions (e.g. image regions),
``d`` width, ``h`` heads.
"""

from __future__ import annotations

from typing import NamedTuple

from timm.layers import Mlp
from torch import Tensor, nn

from vlkit.attention.multihead import MultiHeadAttention, MultiHeadAttentionOutput

__all__ = ["TransformerBlock", "TransformerDecoderBlock", "TransformerDecoderBlockOutput"]


class TransformerBlock(nn.Module):
    """Pre-norm Transformer encoder block (Vaswani et al., NeurIPS 2017; pre-norm: Xiong et al., ICML 2020).

    ``x = x + drop(MHA(LN(x)))``, then ``x = x + MLP(LN(x))`` with a GELU MLP
    (:class:`timm.layers.Mlp`). Pre-norm keeps training stable without a long warm-up.

    Args:
        dim: token width ``d`` (divisible by ``num_heads``).
        num_heads: attention heads ``h``.
        mlp_ratio: MLP hidden width as a multiple of ``dim`` (> 0).
        qkv_bias: bias on the q/k/v projections.
        proj_drop: dropout after attention and inside the MLP, in ``[0, 1)``.
        attn_drop: dropout on the attention weights, in ``[0, 1)``.
        act_layer: MLP activation class.
        norm_layer: normalisation class.

    Shapes:
        ``forward(x: (b, l, d), mask: (b, l) or (b, l, l) bool | None, causal: bool,
        need_weights: bool) -> MultiHeadAttentionOutput(output (b, l, d), weights
        (b, h, l, l) | None)``. Padded positions still get (unused) outputs; rows of real
        tokens never depend on them.

    Raises:
        ValueError: ``dim`` not divisible by ``num_heads``, ``mlp_ratio <= 0``, bad shapes.
        TypeError: non-bool mask.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")
        self.norm1 = norm_layer(dim)
        self.attn = MultiHeadAttention(
            dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, causal: bool = False, need_weights: bool = False
    ) -> MultiHeadAttentionOutput:
        attended, weights = self.attn(self.norm1(x), mask=mask, causal=causal, need_weights=need_weights)
        x = x + attended  # (b, l, d)
        x = x + self.mlp(self.norm2(x))
        return MultiHeadAttentionOutput(x, weights)


class TransformerDecoderBlockOutput(NamedTuple):
    """Output of :class:`TransformerDecoderBlock`.

    Attributes:
        output: ``(b, l, d)`` updated token features.
        self_weights: ``(b, h, l, l)`` causal self-attention weights when requested, else None.
        cross_weights: ``(b, h, l, n)`` cross-attention weights over the context when
            requested, else None.
    """

    output: Tensor
    self_weights: Tensor | None
    cross_weights: Tensor | None


class TransformerDecoderBlock(TransformerBlock):
    """Pre-norm Transformer decoder block (Vaswani et al., NeurIPS 2017, arXiv:1706.03762).

    ``x = x + MHA(LN(x), causal)``, then ``x = x + MHA(LN(x), context)`` (cross-attention:
    queries from the tokens, keys = values = the context, e.g. image regions), then
    ``x = x + MLP(LN(x))`` with a GELU MLP (:class:`timm.layers.Mlp`). Both attentions are
    :class:`MultiHeadAttention`, so they run on the fused kernel unless weights are requested.

    Args:
        dim: token width ``d`` (divisible by ``num_heads``).
        num_heads: attention heads ``h``.
        dim_context: width of the context (default ``dim``).
        mlp_ratio: MLP hidden width as a multiple of ``dim`` (> 0).
        qkv_bias: bias on the q/k/v projections.
        proj_drop: dropout after each attention and inside the MLP, in ``[0, 1)``.
        attn_drop: dropout on the attention weights, in ``[0, 1)``.
        act_layer: MLP activation class.
        norm_layer: normalisation class.

    Shapes:
        ``forward(x: (b, l, d), context: (b, n, d_c), context_mask: (b, n) bool | None,
        mask: (b, l) bool | None (token padding), need_weights: bool) ->
        TransformerDecoderBlockOutput``. Token ``t`` never depends on tokens after ``t``.

    Raises:
        ValueError: ``dim`` not divisible by ``num_heads``, ``mlp_ratio <= 0``, bad shapes.
        TypeError: non-bool masks.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        dim_context: int | None = None,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        act_layer: type[nn.Module] = nn.GELU,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio, qkv_bias, proj_drop, attn_drop, act_layer, norm_layer)
        # from TransformerBlock: norm1 + attn (here causal self-attention), norm2 + mlp
        self.norm_cross = norm_layer(dim)
        self.cross_attn = MultiHeadAttention(
            dim, num_heads, dim_context, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop
        )

    def forward(
        self,
        x: Tensor,
        context: Tensor,
        context_mask: Tensor | None = None,
        mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> TransformerDecoderBlockOutput:
        attended, self_weights = self.attn(self.norm1(x), mask=mask, causal=True, need_weights=need_weights)
        x = x + attended  # (b, l, d)
        attended, cross_weights = self.cross_attn(
            self.norm_cross(x), context, mask=context_mask, need_weights=need_weights
        )
        x = x + attended
        x = x + self.mlp(self.norm2(x))
        return TransformerDecoderBlockOutput(x, self_weights, cross_weights)
