"""Parallel and alternating co-attention (Lu, Yang, Batra & Parikh, NeurIPS 2016, arXiv:1606.00061).

The paper writes features as columns (``V ∈ R^{d×n}``, ``Q ∈ R^{d×l}``); vlkit stores them as
rows (``(b, n, d_v)``, ``(b, l, d_q)``), so every product below is the transpose of the
paper's, with identical values.

Shape legend: ``b`` batch, ``n`` image regions, ``l`` text tokens, ``d_v`` image width,
``d_q`` text width, ``k`` hidden (co-attention) width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlkit.attention.hard import HardContext
from vlkit.attention.masking import drop_full_mask, masked_softmax
from vlkit.fusion.common import COMBINE_MODES, FusionOutput, check_fusion_inputs, combined_dim

__all__ = ["AlternatingCoAttention", "GuidedAttention", "ParallelCoAttention", "hard_context"]


def hard_context(image_context: nn.Module | str | None) -> nn.Module | None:
    """The context step a co-attention layer is given: a module as it is, an estimator name as a
    :class:`vlkit.attention.HardContext` with that estimator, None (soft attention) as None.

    Raises:
        ValueError: an unknown estimator name (the message lists the valid ones).
    """
    return HardContext(image_context) if isinstance(image_context, str) else image_context


def _pool(x: Tensor, weights: Tensor, hard: nn.Module | None = None) -> Tensor:
    """Weighted sum ``Σ_i a_i x_i`` (soft), or the hard context's pick: ``(b, m, d), (b, m) -> (b, d)``."""
    if hard is not None:
        return hard(weights[:, None, :], x).context[:, 0]  # (b, d)
    return torch.einsum("bm,bmd->bd", weights, x)


class ParallelCoAttention(nn.Module):
    """Parallel co-attention (Lu et al., NeurIPS 2016, arXiv:1606.00061, section 3.3).

    Image and question attend to each other at once through the affinity matrix::

        C   = tanh(Qᵀ W_b V)                    (l × n)
        H_v = tanh(W_v V + (W_q Q) C)           (k × n)
        H_q = tanh(W_q Q + (W_v V) Cᵀ)          (k × l)
        a_v = softmax(w_hvᵀ H_v),  a_q = softmax(w_hqᵀ H_q)
        v̂ = Σ a_v^i v_i,   q̂ = Σ a_q^j q_j

    Masked regions/tokens get weight 0 and their rows and columns of ``C`` are zeroed, so
    padding cannot change any output.

    ``W_b`` is stored scaled, ``W_b = c · affinity_weight`` with ``c = (d_q·d_v)^{-1/2}`` and
    ``affinity_weight ~ N(0, 1)`` (the "equalized learning rate" of Karras et al., ICLR 2018,
    arXiv:1710.10196): ``qᵀ W_b v`` sums ``d_q·d_v`` products, so ``W_b`` must start at std ``c``
    for ``C`` to start unsaturated, and Adam moves every entry of a parameter by about the learning
    rate per step whatever its scale, which would swamp an entry of std ``c`` (1/256 at width 256)
    within a few steps and leave ``C`` saturated at ±1 (``tanh``'s gradient then vanishes). Stored
    this way, Adam's step on ``W_b`` is ``c`` times the learning rate. ``affinity`` gives ``W_b``.

    Args:
        image_dim: width ``d_v`` of the image region features.
        text_dim: width ``d_q`` of the text token features.
        hidden_dim: co-attention width ``k``.
        dropout: dropout on ``H_v`` and ``H_q`` during training, in ``[0, 1)``.
        image_context: None (default) for the paper's soft sum ``v̂ = Σ a_v^i v_i``; a
            :class:`vlkit.attention.HardContext`, or the name of its estimator (``"gumbel"``
            or ``"reinforce"``), to pick one region from ``a_v`` instead (hard attention, Xu
            et al., ICML 2015, arXiv:1502.03044).
        combine: how ``fused`` joins ``v̂`` and ``q̂``: ``"concat"`` (default, any widths),
            ``"sum"`` (the paper's ``q̂ + v̂``, needs ``d_v = d_q``) or ``"product"`` (see
            :data:`vlkit.fusion.COMBINE_MODES`).

    Shapes:
        ``forward(image: (b, n, d_v), image_mask: (b, n) bool | None, text: (b, l, d_q),
        text_mask: (b, l) bool | None) -> FusionOutput`` (True = attend) with ``fused``
        ``(b, output_dim)``, ``image`` = ``v̂``, ``text`` = ``q̂``, ``image_weights`` = ``a_v``,
        ``text_weights`` = ``a_q``, ``maps["affinity"]`` = ``C`` ``(b, l, n)`` and
        ``maps["affinity_scores"]`` = ``Qᵀ W_b V`` ``(b, l, n)`` (``C`` before the tanh, which a
        trained model often saturates; 0 at masked positions).

    Raises:
        ValueError: on wrongly shaped inputs or masks, widths that differ from the
            constructor's, or a ``combine`` mode that does not fit the widths.
        TypeError: if a mask is not bool.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        hidden_dim: int = 512,
        dropout: float = 0.0,
        image_context: nn.Module | str | None = None,
        combine: str = "concat",
    ) -> None:
        super().__init__()
        self.image_dim, self.text_dim = image_dim, text_dim
        self.combine, self.output_dim = combine, combined_dim(combine, image_dim, text_dim)
        self.image_context = hard_context(image_context)
        # W_b = c · affinity_weight: std c gives qᵀ W_b v unit variance for unit-variance features
        # (C = tanh(·) starts unsaturated), and the optimiser's steps on W_b are c times smaller
        self.affinity_weight = nn.Parameter(torch.randn(text_dim, image_dim))
        self.affinity_scale = (text_dim * image_dim) ** -0.5
        self.image_proj = nn.Linear(image_dim, hidden_dim, bias=False)  # W_v
        self.text_proj = nn.Linear(text_dim, hidden_dim, bias=False)  # W_q
        self.image_score = nn.Linear(hidden_dim, 1, bias=False)  # w_hv
        self.text_score = nn.Linear(hidden_dim, 1, bias=False)  # w_hq
        self.dropout = nn.Dropout(dropout)

    @property
    def affinity(self) -> Tensor:
        """``W_b``: ``(d_q, d_v)`` float, ``affinity_weight · (d_q·d_v)^{-1/2}``."""
        return self.affinity_weight * self.affinity_scale

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        check_fusion_inputs(image, image_mask, text, text_mask, self.image_dim, self.text_dim)
        # all-True masks (an image encoder's regions) mask nothing: no masked_fill copies for them
        image_mask, text_mask = drop_full_mask(image_mask), drop_full_mask(text_mask)
        scores = text @ self.affinity @ image.transpose(1, 2)  # S = Qᵀ W_b V: (b, l, n)
        if text_mask is not None:
            scores = scores.masked_fill(~text_mask[:, :, None], 0.0)
        if image_mask is not None:
            scores = scores.masked_fill(~image_mask[:, None, :], 0.0)
        affinity = torch.tanh(scores)  # C: (b, l, n), 0 where S was masked
        image_h = self.image_proj(image)  # W_v V: (b, n, k)
        text_h = self.text_proj(text)  # W_q Q: (b, l, k)
        hidden_v = self.dropout(torch.tanh(image_h + affinity.transpose(1, 2) @ text_h))  # H_v: (b, n, k)
        hidden_q = self.dropout(torch.tanh(text_h + affinity @ image_h))  # H_q: (b, l, k)
        image_weights = masked_softmax(self.image_score(hidden_v).squeeze(-1), image_mask)  # (b, n)
        text_weights = masked_softmax(self.text_score(hidden_q).squeeze(-1), text_mask)  # (b, l)
        image_vec = _pool(image, image_weights, self.image_context)  # v̂: (b, d_v)
        text_vec = _pool(text, text_weights)  # q̂: (b, d_q)
        return FusionOutput(
            COMBINE_MODES[self.combine](image_vec, text_vec),
            image_vec,
            text_vec,
            image_weights,
            text_weights,
            maps={"affinity": affinity, "affinity_scores": scores},
        )


class GuidedAttention(nn.Module):
    """The attention operator ``x̂ = A(X; g)`` of alternating co-attention (Lu et al., NeurIPS 2016).

    ``H = tanh(W_x X + (W_g g) 1ᵀ)``, ``a_x = softmax(w_hxᵀ H)``, ``x̂ = Σ a_x^i x_i``.

    Args:
        input_dim: width of the attended features ``X``.
        guide_dim: width of the guidance vector ``g``; ``None`` for the unguided first step
            (``g = 0``, so the ``W_g g`` term vanishes).
        hidden_dim: width ``k`` of ``H``.
        dropout: dropout on ``H`` during training.
        context: a :class:`vlkit.attention.HardContext` to pick one position instead of
            the soft sum (hard attention); None for soft attention.

    Shapes:
        ``forward(x: (b, m, d_x), mask: (b, m) bool | None, guide: (b, d_g) | None)
        -> (attended: (b, d_x), weights: (b, m))``.
    """

    def __init__(
        self,
        input_dim: int,
        guide_dim: int | None,
        hidden_dim: int,
        dropout: float = 0.0,
        context: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.context = context
        self.input_proj = nn.Linear(input_dim, hidden_dim, bias=False)  # W_x
        self.guide_proj = None if guide_dim is None else nn.Linear(guide_dim, hidden_dim, bias=False)  # W_g
        self.score = nn.Linear(hidden_dim, 1, bias=False)  # w_hx
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None, guide: Tensor | None = None) -> tuple[Tensor, Tensor]:
        hidden = self.input_proj(x)  # (b, m, k)
        if guide is not None:
            if self.guide_proj is None:
                raise ValueError("this GuidedAttention was built with guide_dim=None; it takes no guide")
            hidden = hidden + self.guide_proj(guide)[:, None, :]  # (W_g g) 1ᵀ
        hidden = self.dropout(torch.tanh(hidden))  # H: (b, m, k)
        weights = masked_softmax(self.score(hidden).squeeze(-1), mask)  # (b, m)
        return _pool(x, weights, self.context), weights


class AlternatingCoAttention(nn.Module):
    """Alternating co-attention (Lu et al., NeurIPS 2016, arXiv:1606.00061, section 3.3).

    Three applications of the guided attention operator ``A`` (:class:`GuidedAttention`),
    each with its own parameters::

        step 1: ŝ = A(Q; 0)     summarise the question
        step 2: v̂ = A(V; ŝ)     attend to the image guided by the question summary
        step 3: q̂ = A(Q; v̂)     attend to the question guided by the attended image

    Args:
        image_dim: width ``d_v`` of the image region features.
        text_dim: width ``d_q`` of the text token features.
        hidden_dim: width ``k`` of the attention hidden layer.
        dropout: dropout on the hidden layers during training, in ``[0, 1)``.
        image_context: None (default) for soft attention; a :class:`vlkit.attention.HardContext`,
            or the name of its estimator (``"gumbel"`` or ``"reinforce"``), making step 2 hard
            attention (one region ``v_s``, Xu et al., ICML 2015, arXiv:1502.03044).
        combine: how ``fused`` joins ``v̂`` and ``q̂``: ``"concat"`` (default, any widths),
            ``"sum"`` (the paper's, needs ``d_v = d_q``) or ``"product"``.

    Shapes:
        ``forward(image: (b, n, d_v), image_mask: (b, n) bool | None, text: (b, l, d_q),
        text_mask: (b, l) bool | None) -> FusionOutput`` with ``fused`` ``(b, output_dim)``,
        ``image`` = ``v̂``, ``text`` = ``q̂``; ``image_weights`` are step 2's, ``text_weights``
        step 3's and ``maps["summary"]`` step 1's ``(b, l)``. Masked positions get weight 0
        and cannot change outputs.

    Raises:
        ValueError: on wrongly shaped inputs or masks, or a ``combine`` mode that does not fit
            the widths.
        TypeError: if a mask is not bool.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        hidden_dim: int = 512,
        dropout: float = 0.0,
        image_context: nn.Module | str | None = None,
        combine: str = "concat",
    ) -> None:
        super().__init__()
        self.image_dim, self.text_dim = image_dim, text_dim
        self.combine, self.output_dim = combine, combined_dim(combine, image_dim, text_dim)
        self.summarise_text = GuidedAttention(text_dim, None, hidden_dim, dropout)  # step 1
        self.attend_image = GuidedAttention(  # step 2
            image_dim, text_dim, hidden_dim, dropout, hard_context(image_context)
        )
        self.attend_text = GuidedAttention(text_dim, image_dim, hidden_dim, dropout)  # step 3

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        check_fusion_inputs(image, image_mask, text, text_mask, self.image_dim, self.text_dim)
        summary, summary_weights = self.summarise_text(text, text_mask)  # ŝ: (b, d_q)
        image_vec, image_weights = self.attend_image(image, image_mask, summary)  # v̂: (b, d_v)
        text_vec, text_weights = self.attend_text(text, text_mask, image_vec)  # q̂: (b, d_q)
        return FusionOutput(
            COMBINE_MODES[self.combine](image_vec, text_vec),
            image_vec,
            text_vec,
            image_weights,
            text_weights,
            maps={"summary": summary_weights},
        )
