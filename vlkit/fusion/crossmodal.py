"""Cross-modal attention: one modality's positions attend over the other's
(``docs/mechanisms.md#cross-modal-attention``).

- :class:`CrossModalAttention`: one direction, plain attention. For ``"image_to_text"`` each
  region ``r_j`` attends over the tokens: ``α_ij = softmax_i(score(r_j, t_i))``,
  ``c_j = Σ_i α_ij t_i``; ``"text_to_image"`` is the reverse.
- :class:`CrossModalTransformer`: the transformer form in both directions, as the crossmodal
  transformers of MulT (Tsai et al., ACL 2019, arXiv:1906.00295): stacks of
  :class:`CrossModalTransformerLayer` (queries from one modality, keys = values from the
  other, residual, LayerNorm, feed-forward).

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d_v``/``d_q`` image/text widths,
``d`` model width, ``h`` heads.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlkit.attention.masking import drop_full_mask
from vlkit.attention.multihead import MultiHeadAttentionOutput
from vlkit.attention.pooling import Attention
from vlkit.attention.scoring import create_score
from vlkit.attention.transformer import TransformerBlock
from vlkit.fusion.common import (
    COMBINE_MODES,
    FusionOutput,
    check_fusion_inputs,
    combined_dim,
    masked_mean,
    zero_padding,
)

__all__ = [
    "CROSS_MODAL_DIRECTIONS",
    "CrossModalAttention",
    "CrossModalTransformer",
    "CrossModalTransformerLayer",
]

#: The directions of :class:`CrossModalAttention`: which modality gives the queries.
CROSS_MODAL_DIRECTIONS = ("image_to_text", "text_to_image")


class CrossModalAttention(nn.Module):
    """One direction of cross-modal attention (``docs/mechanisms.md#cross-modal-attention``).

    Region-over-word attention of this form is the image–text formulation of SCAN (Lee, Chen, Hua,
    Hu & He, "Stacked Cross Attention for Image-Text Matching", ECCV 2018, arXiv:1803.08024),
    which scores with a normalised cosine similarity; here any vlkit score function is used.

    With ``direction="image_to_text"`` every image region attends over the text tokens::

        α_ij = softmax_i(score(r_j, t_i)),    c_j = Σ_i α_ij t_i

    and ``"text_to_image"`` swaps the roles. The layer's two vectors are the masked means over
    the query positions of the queries and of their contexts; for image_to_text,
    ``image = mean_j r_j`` and ``text = mean_j c_j = Σ_i ā_i t_i`` with ``ā_i = mean_j α_ij``
    (returned as ``text_weights``). ``fused`` joins them with ``combine``.

    Args:
        image_dim: width ``d_v`` of the regions.
        text_dim: width ``d_q`` of the tokens.
        hidden_dim: hidden width of the ``additive`` and ``concat`` scores (unused by the others).
        dropout: dropout on the attention weights during training, in ``[0, 1)``.
        direction: ``"image_to_text"`` (regions query tokens) or ``"text_to_image"``.
        score: a score function of :data:`vlkit.attention.SCORE_FUNCTIONS`; the default
            ``"general"`` (``r_jᵀ W t_i``, Luong et al. 2015) works for any two widths, while
            ``"dot"``/``"scaled_dot"`` need ``d_v = d_q``.
        combine: how ``fused`` joins the two vectors: ``"concat"`` (default), ``"sum"`` or
            ``"product"`` (these need ``d_v = d_q``).

    Shapes:
        ``forward(image: (b, n, d_v), image_mask: (b, n) bool | None, text: (b, l, d_q),
        text_mask: (b, l) bool | None) -> FusionOutput``. For image_to_text: ``image_tokens``
        the contexts ``c_j`` ``(b, n, d_q)``, ``text_weights`` ``ā`` ``(b, l)``,
        ``maps["image_to_text"]`` ``α`` ``(b, n, l)``; for text_to_image: ``text_tokens``
        ``(b, l, d_v)``, ``image_weights`` ``(b, n)``, ``maps["text_to_image"]`` ``(b, l, n)``.
        Padded query positions get zero rows; padded keys get zero weight.

    Raises:
        ValueError: unknown ``direction``/``score``/``combine``, a width-less score with
            different widths, or wrongly shaped inputs.
        TypeError: a mask that is not bool.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        hidden_dim: int = 256,
        dropout: float = 0.0,
        direction: str = "image_to_text",
        score: str = "general",
        combine: str = "concat",
    ) -> None:
        super().__init__()
        if direction not in CROSS_MODAL_DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; valid: {list(CROSS_MODAL_DIRECTIONS)}")
        query_dim, key_dim = (image_dim, text_dim) if direction == "image_to_text" else (text_dim, image_dim)
        if score in ("dot", "scaled_dot") and query_dim != key_dim:
            raise ValueError(
                f"score {score!r} compares vectors of one width, got image {image_dim} and text "
                f"{text_dim}; use score='general' (bilinear) or 'additive'"
            )
        self.image_dim, self.text_dim, self.direction = image_dim, text_dim, direction
        self.combine, self.output_dim = combine, combined_dim(combine, image_dim, text_dim)
        self.attention = Attention(create_score(score, query_dim, key_dim, hidden_dim), dropout=dropout)

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        check_fusion_inputs(image, image_mask, text, text_mask, self.image_dim, self.text_dim)
        # all-True masks (an image encoder's regions) mask nothing: no masked_fill copies for them
        image_mask, text_mask = drop_full_mask(image_mask), drop_full_mask(text_mask)
        if self.direction == "image_to_text":
            query, query_mask, key, key_mask = image, image_mask, text, text_mask
        else:
            query, query_mask, key, key_mask = text, text_mask, image, image_mask
        context, weights = self.attention(query, key, key, key_mask)  # (b, m, d_key), (b, m, k)
        context, weights = zero_padding(context, query_mask), zero_padding(weights, query_mask)
        # padded query rows are already zero: the masked means are plain sums over the kept count
        count = query.shape[1] if query_mask is None else query_mask.sum(1, keepdim=True).clamp(min=1)
        query_vec = masked_mean(query, query_mask)  # (b, d_query)
        context_vec = context.sum(1) / count  # (b, d_key)
        key_weights = weights.sum(1) / count  # (b, k): mean attention over the queries
        if self.direction == "image_to_text":
            image_vec, text_vec = query_vec, context_vec
            extra = {"text_weights": key_weights, "image_tokens": context}
        else:
            image_vec, text_vec = context_vec, query_vec
            extra = {"image_weights": key_weights, "text_tokens": context}
        return FusionOutput(
            COMBINE_MODES[self.combine](image_vec, text_vec),
            image_vec,
            text_vec,
            maps={self.direction: weights},
            **extra,
        )


class CrossModalTransformerLayer(TransformerBlock):
    """One crossmodal transformer layer of MulT (Tsai et al., ACL 2019, arXiv:1906.00295, section 3.2).

    Queries from the target modality, keys = values from the source, pre-norm::

        x = x + MHA(LN(x), LN(c), LN(c))
        x = x + FFN(LN(x))            FFN: Linear-ReLU-Linear (as MulT)

    It is :class:`vlkit.attention.TransformerBlock` whose attention reads another sequence.

    Args:
        dim: width ``d`` of both sequences (divisible by ``num_heads``).
        num_heads: attention heads ``h``.
        mlp_ratio: FFN hidden width as a multiple of ``dim`` (> 0).
        dropout: dropout after attention and inside the FFN, in ``[0, 1)``.
        attn_drop: dropout on the attention weights, in ``[0, 1)``.

    Shapes:
        ``forward(x: (b, m, d), context: (b, k, d), context_mask: (b, k) bool | None,
        need_weights: bool) -> MultiHeadAttentionOutput(output (b, m, d), weights
        (b, h, m, k) | None)``.

    Raises:
        ValueError: ``dim`` not divisible by ``num_heads``, ``mlp_ratio <= 0``, bad shapes.
        TypeError: non-bool mask.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio, proj_drop=dropout, attn_drop=attn_drop, act_layer=nn.ReLU)
        self.norm_context = nn.LayerNorm(dim)

    def forward(  # type: ignore[override]
        self, x: Tensor, context: Tensor, context_mask: Tensor | None = None, need_weights: bool = False
    ) -> MultiHeadAttentionOutput:
        attended, weights = self.attn(
            self.norm1(x), self.norm_context(context), mask=context_mask, need_weights=need_weights
        )
        x = x + attended  # (b, m, d)
        x = x + self.mlp(self.norm2(x))
        return MultiHeadAttentionOutput(x, weights)


class CrossModalTransformer(nn.Module):
    """Bidirectional crossmodal transformer fusion (MulT, Tsai et al., ACL 2019, arXiv:1906.00295).

    Both sequences are projected to width ``d``; then two stacks of ``depth``
    :class:`CrossModalTransformerLayer` run side by side: image queries over text keys/values
    (MulT's text → vision) and text queries over image keys/values (vision → text). As in
    MulT, every layer of a stack reads the source modality's *input* (projected) features as
    keys and values. A final LayerNorm ends each stack; each modality is then reduced to one
    vector by its masked mean, and ``fused`` joins the two with ``combine``. No positional
    encoding is added: the encoders are expected to carry order and location.

    Args:
        image_dim: width ``d_v`` of the regions.
        text_dim: width ``d_q`` of the tokens.
        hidden_dim: model width ``d`` (divisible by ``num_heads``).
        dropout: dropout after attention and in the FFN, in ``[0, 1)``.
        depth: layers per direction (>= 1).
        num_heads: attention heads.
        mlp_ratio: FFN hidden width as a multiple of ``d``.
        combine: ``"concat"`` (default), ``"sum"`` or ``"product"``.
        need_weights: also return the last layer's attention maps (slower: the explicit
            attention path replaces the fused kernel).

    Shapes:
        ``forward(image: (b, n, d_v), image_mask: (b, n) bool | None, text: (b, l, d_q),
        text_mask: (b, l) bool | None) -> FusionOutput`` with ``fused`` ``(b, output_dim)``,
        ``image``/``text`` ``(b, d)``, ``image_tokens`` ``(b, n, d)``, ``text_tokens``
        ``(b, l, d)`` (zero at padding), and with ``need_weights`` ``maps["image_to_text"]``
        ``(b, h, n, l)`` and ``maps["text_to_image"]`` ``(b, h, l, n)``.

    Raises:
        ValueError: ``depth < 1``, ``hidden_dim`` not divisible by ``num_heads``, an unknown
            ``combine``, or wrongly shaped inputs.
        TypeError: a mask that is not bool.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        hidden_dim: int = 256,
        dropout: float = 0.0,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        combine: str = "concat",
        need_weights: bool = False,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.image_dim, self.text_dim, self.need_weights = image_dim, text_dim, need_weights
        self.combine, self.output_dim = combine, combined_dim(combine, hidden_dim, hidden_dim)
        self.image_proj = nn.Linear(image_dim, hidden_dim)
        self.text_proj = nn.Linear(text_dim, hidden_dim)

        def stack() -> nn.ModuleList:
            return nn.ModuleList(
                CrossModalTransformerLayer(hidden_dim, num_heads, mlp_ratio, dropout) for _ in range(depth)
            )

        self.image_layers, self.text_layers = stack(), stack()
        self.image_norm, self.text_norm = nn.LayerNorm(hidden_dim), nn.LayerNorm(hidden_dim)

    @staticmethod
    def _run(
        layers: nn.ModuleList, x: Tensor, source: Tensor, source_mask: Tensor | None, need_weights: bool
    ):
        weights = None
        for i, layer in enumerate(layers):
            x, weights = layer(x, source, source_mask, need_weights=need_weights and i == len(layers) - 1)
        return x, weights

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        check_fusion_inputs(image, image_mask, text, text_mask, self.image_dim, self.text_dim)
        image_in, text_in = self.image_proj(image), self.text_proj(text)  # (b, n, d), (b, l, d)
        image_x, image_w = self._run(self.image_layers, image_in, text_in, text_mask, self.need_weights)
        text_x, text_w = self._run(self.text_layers, text_in, image_in, image_mask, self.need_weights)
        image_tokens = zero_padding(self.image_norm(image_x), image_mask)
        text_tokens = zero_padding(self.text_norm(text_x), text_mask)
        image_vec, text_vec = masked_mean(image_tokens, image_mask), masked_mean(text_tokens, text_mask)
        maps = {"image_to_text": image_w, "text_to_image": text_w} if self.need_weights else None
        return FusionOutput(
            COMBINE_MODES[self.combine](image_vec, text_vec),
            image_vec,
            text_vec,
            image_tokens=image_tokens,
            text_tokens=text_tokens,
            maps=maps,
        )
