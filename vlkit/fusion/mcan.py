"""Deep Modular Co-Attention Networks (MCAN; Yu, Yu, Cui, Tao & Tian, CVPR 2019, arXiv:1906.10770).

Two attention units (post-norm, as in the paper; ``docs/mechanisms.md#mcan``)::

    SA(X)    = LN(X + MHA(X, X, X)),  then LN(· + FFN(·))
    GA(X, Y) = LN(X + MHA(X, Y, Y)),  then LN(· + FFN(·))

stacked encoder–decoder: ``L`` SA units encode the question ``Y``; ``L`` decoder layers
(SA on the image, then GA guided by the *final* question features, one FFN) refine the image
``X``. An attentional reduction turns each modality into one vector and the two are fused as
``LN(W_x x̃ + W_y ỹ)``.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``m`` positions of either, ``d``
model width, ``h`` heads, ``g`` glimpses.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from vlkit.attention.masking import masked_softmax
from vlkit.attention.multihead import MultiHeadAttention, MultiHeadAttentionOutput
from vlkit.fusion.common import FusionOutput, check_fusion_inputs, zero_padding

__all__ = ["MCAN", "AttentionalReduction", "GuidedAttentionUnit", "ReductionOutput", "SelfAttentionUnit"]


def _feed_forward(dim: int, hidden_dim: int, dropout: float) -> nn.Sequential:
    """MCAN's FFN: ``Linear(d, 4d)``, ReLU, dropout, ``Linear(4d, d)``."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, dim)
    )


class SelfAttentionUnit(nn.Module):
    """MCAN's self-attention (SA) unit (Yu et al., CVPR 2019, arXiv:1906.10770, section 3.1).

    ``X = LN(X + drop(MHA(X, X, X)))``, then (if ``ffn``) ``X = LN(X + drop(FFN(X)))``.

    Args:
        dim: width ``d`` (divisible by ``num_heads``).
        num_heads: attention heads ``h``.
        ffn_dim: FFN hidden width (default ``4·d``).
        dropout: dropout on the residual branches and inside the FFN, in ``[0, 1)``.
        ffn: whether the unit ends with the FFN sub-layer (False inside an MCAN decoder
            layer, where the GA unit's FFN follows).

    Shapes:
        ``forward(x: (b, m, d), mask: (b, m) bool | None, need_weights: bool)
        -> MultiHeadAttentionOutput(output (b, m, d), weights (b, h, m, m) | None)``.

    Raises:
        ValueError: ``dim`` not divisible by ``num_heads``, bad shapes.
        TypeError: non-bool mask.
    """

    def __init__(
        self, dim: int, num_heads: int = 8, ffn_dim: int | None = None, dropout: float = 0.1, ffn: bool = True
    ) -> None:
        super().__init__()
        self.attn = MultiHeadAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.ffn = _feed_forward(dim, 4 * dim if ffn_dim is None else ffn_dim, dropout) if ffn else None
        self.norm2 = nn.LayerNorm(dim) if ffn else None

    def _unit(
        self, x: Tensor, context: Tensor | None, mask: Tensor | None, need_weights: bool
    ) -> MultiHeadAttentionOutput:
        attended, weights = self.attn(x, context, mask=mask, need_weights=need_weights)
        x = self.norm1(x + self.dropout(attended))
        if self.ffn is not None:
            x = self.norm2(x + self.dropout(self.ffn(x)))
        return MultiHeadAttentionOutput(x, weights)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> MultiHeadAttentionOutput:
        return self._unit(x, None, mask, need_weights)


class GuidedAttentionUnit(SelfAttentionUnit):
    """MCAN's guided-attention (GA) unit (Yu et al., CVPR 2019, arXiv:1906.10770, section 3.1).

    ``X = LN(X + drop(MHA(X, Y, Y)))``, then ``X = LN(X + drop(FFN(X)))``: the queries come
    from ``X``, keys and values from the guide ``Y``. With ``Y = X`` it is the SA unit.

    Args:
        dim: width ``d`` of ``X`` (divisible by ``num_heads``); ``Y`` must be ``d`` wide too.
        num_heads, ffn_dim, dropout, ffn: as :class:`SelfAttentionUnit`.

    Shapes:
        ``forward(x: (b, m, d), y: (b, k, d), y_mask: (b, k) bool | None, need_weights: bool)
        -> MultiHeadAttentionOutput(output (b, m, d), weights (b, h, m, k) | None)``.

    Raises:
        ValueError: ``dim`` not divisible by ``num_heads``, bad shapes.
        TypeError: non-bool mask.
    """

    def forward(  # type: ignore[override]
        self, x: Tensor, y: Tensor, y_mask: Tensor | None = None, need_weights: bool = False
    ) -> MultiHeadAttentionOutput:
        return self._unit(x, y, y_mask, need_weights)


class ReductionOutput(NamedTuple):
    """Output of :class:`AttentionalReduction`.

    Attributes:
        vector: ``(b, output_dim)`` the reduced vector (``(b, g·d)`` without a merge layer).
        weights: ``(b, g, m)`` attention of each glimpse over the positions (0 where masked).
    """

    vector: Tensor
    weights: Tensor


class AttentionalReduction(nn.Module):
    """Attentional reduction to one vector (MCAN's AttFlat, Yu et al., CVPR 2019, arXiv:1906.10770,
    section 4.2).

    ``α^g = softmax_m(MLP(s)_g)`` over the kept positions, ``x̃ = W_m [Σ_m α^g_m x_m]_{g=1..G}``
    where the MLP is ``Linear``-ReLU-dropout-``Linear`` and the scores are read from ``s``
    (``x`` itself unless ``scores_from`` is given, as MFB's image attention reads MFB features).

    Args:
        dim: width ``d`` of the pooled features ``x``.
        hidden_dim: MLP hidden width.
        glimpses: number ``G`` of attention maps (>= 1).
        output_dim: width of the merge layer ``W_m``; None for no merge (the ``G`` pooled
            vectors are concatenated, ``G·d`` wide).
        dropout: dropout inside the MLP, in ``[0, 1)``.
        score_dim: width of ``scores_from`` (default ``dim``).

    Shapes:
        ``forward(x: (b, m, d), mask: (b, m) bool | None, scores_from: (b, m, score_dim) |
        None) -> ReductionOutput``. A row with no kept position gets zero weights and vector
        ``W_m 0``.

    Raises:
        ValueError: ``glimpses < 1``.
    """

    def __init__(
        self,
        dim: int,
        hidden_dim: int = 512,
        glimpses: int = 1,
        output_dim: int | None = None,
        dropout: float = 0.0,
        score_dim: int | None = None,
    ) -> None:
        super().__init__()
        if glimpses < 1:
            raise ValueError(f"glimpses must be >= 1, got {glimpses}")
        self.glimpses = glimpses
        self.output_dim = glimpses * dim if output_dim is None else output_dim
        self.mlp = nn.Sequential(
            nn.Linear(dim if score_dim is None else score_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, glimpses),
        )
        self.merge = None if output_dim is None else nn.Linear(glimpses * dim, output_dim)

    def forward(
        self, x: Tensor, mask: Tensor | None = None, scores_from: Tensor | None = None
    ) -> ReductionOutput:
        scores = self.mlp(x if scores_from is None else scores_from).transpose(1, 2)  # (b, g, m)
        weights = masked_softmax(scores, None if mask is None else mask[:, None, :])  # (b, g, m)
        pooled = (weights @ x).flatten(1)  # (b, g·d)
        return ReductionOutput(pooled if self.merge is None else self.merge(pooled), weights)


class MCAN(nn.Module):
    """MCAN encoder–decoder fusion (Yu et al., CVPR 2019, arXiv:1906.10770, sections 3–4).

    ``Y = SA^L(W_y text)``; ``X = [GA(SA(·), Y)]^L(W_x image)`` (each decoder layer: SA without
    FFN, then GA with FFN, as the paper's SGA); ``x̃, ỹ`` = attentional reductions;
    ``fused = LN(x̃ + ỹ)`` (the reductions' merge layers are the paper's ``W_x, W_y``).

    Args:
        image_dim: width ``d_v`` of the regions.
        text_dim: width ``d_q`` of the tokens.
        hidden_dim: model width ``d`` (divisible by ``num_heads``; the paper's 512).
        dropout: dropout in the units and the reductions, in ``[0, 1)``.
        depth: ``L``, SA units in the encoder and layers in the decoder (>= 1; the paper's 6).
        num_heads: attention heads (the paper's 8).
        ffn_dim: FFN hidden width (default ``4·d``).
        output_dim: width of ``fused`` (default ``2·d``, the paper's 1024 for ``d = 512``).
        glimpses: attention maps of each reduction (the paper's 1).

    Shapes:
        ``forward(image: (b, n, d_v), image_mask: (b, n) bool | None, text: (b, l, d_q),
        text_mask: (b, l) bool | None) -> FusionOutput`` with ``fused`` = ``image`` + ``text``
        normalised ``(b, output_dim)``; ``image``/``text`` = ``x̃``/``ỹ``; ``image_weights``
        ``(b, n)`` and ``text_weights`` ``(b, l)`` the reductions' attention (mean over
        glimpses); ``image_tokens`` ``X`` ``(b, n, d)``, ``text_tokens`` ``Y`` ``(b, l, d)`` (zero at padding).

    Raises:
        ValueError: ``depth < 1``, ``hidden_dim`` not divisible by ``num_heads``, or wrongly
            shaped inputs.
        TypeError: a mask that is not bool.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        hidden_dim: int = 512,
        dropout: float = 0.1,
        depth: int = 6,
        num_heads: int = 8,
        ffn_dim: int | None = None,
        output_dim: int | None = None,
        glimpses: int = 1,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.image_dim, self.text_dim = image_dim, text_dim
        self.output_dim = 2 * hidden_dim if output_dim is None else output_dim
        self.image_proj = nn.Linear(image_dim, hidden_dim)
        self.text_proj = nn.Linear(text_dim, hidden_dim)
        unit = {"dim": hidden_dim, "num_heads": num_heads, "ffn_dim": ffn_dim, "dropout": dropout}
        self.encoder = nn.ModuleList(SelfAttentionUnit(**unit) for _ in range(depth))
        self.decoder_self = nn.ModuleList(SelfAttentionUnit(**unit, ffn=False) for _ in range(depth))
        self.decoder_guided = nn.ModuleList(GuidedAttentionUnit(**unit) for _ in range(depth))
        reduction = {
            "hidden_dim": hidden_dim,
            "glimpses": glimpses,
            "output_dim": self.output_dim,
            "dropout": dropout,
        }
        self.image_reduction = AttentionalReduction(hidden_dim, **reduction)
        self.text_reduction = AttentionalReduction(hidden_dim, **reduction)
        self.norm = nn.LayerNorm(self.output_dim)

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        check_fusion_inputs(image, image_mask, text, text_mask, self.image_dim, self.text_dim)
        y = self.text_proj(text)  # (b, l, d)
        for unit in self.encoder:
            y = unit(y, text_mask).output
        x = self.image_proj(image)  # (b, n, d)
        for self_unit, guided_unit in zip(self.decoder_self, self.decoder_guided):
            x = guided_unit(self_unit(x, image_mask).output, y, text_mask).output
        image_vec, image_weights = self.image_reduction(x, image_mask)
        text_vec, text_weights = self.text_reduction(y, text_mask)
        return FusionOutput(
            self.norm(image_vec + text_vec),
            image_vec,
            text_vec,
            image_weights.mean(1),
            text_weights.mean(1),
            image_tokens=zero_padding(x, image_mask),
            text_tokens=zero_padding(y, text_mask),
        )
