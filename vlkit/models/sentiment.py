"""Multimodal sentiment: image encoder + text encoder + fusion + class head, and unimodal baselines.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d`` width, ``K`` classes.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn

from vlkit.fusion import FusionOutput, create_fusion
from vlkit.fusion.common import masked_mean
from vlkit.models.heads import ClassificationHead
from vlkit.models.parts import build_image_encoder
from vlkit.models.registry import register_model
from vlkit.text import create_text_encoder

__all__ = ["MODALITIES", "SentimentModel", "SentimentOutput", "UnimodalPooling", "sentiment_small"]

#: The inputs a sentiment model can use: both (fusion) or one (a unimodal baseline).
MODALITIES = ("both", "image", "text")


class SentimentOutput(NamedTuple):
    """Output of :class:`SentimentModel`.

    Attributes:
        logits: ``(b, K)`` class logits.
        image_weights: ``(b, n)`` attention over image regions, or None if the fusion has none.
        text_weights: ``(b, l)`` attention over text tokens, or None.
    """

    logits: Tensor
    image_weights: Tensor | None
    text_weights: Tensor | None


class UnimodalPooling(nn.Module):
    """The "fusion" of a unimodal baseline: the masked mean of one modality's features.

    Global average pooling of image regions (as the classifier of a CNN, Lin et al., ICLR
    2014, arXiv:1312.4400) or mean pooling of token features (as sentence-transformers,
    Reimers & Gurevych, EMNLP 2019, arXiv:1908.10084). The other modality is ignored and may be
    None, so its encoder need not run.

    Args:
        dim: width of the pooled modality's features.
        modality: ``"image"`` or ``"text"``.

    Shapes:
        ``forward(image: (b, n, d) | None, image_mask: (b, n) bool | None, text: (b, l, d) | None,
        text_mask: (b, l) bool | None) -> FusionOutput(fused=(b, d))`` with ``image`` or
        ``text`` set to the same vector.

    Raises:
        ValueError: an unknown modality, or the pooled modality's features are missing or
            not ``(b, m, dim)``.
    """

    def __init__(self, dim: int, modality: str) -> None:
        super().__init__()
        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
        self.dim, self.modality, self.output_dim = dim, modality, dim

    def forward(
        self, image: Tensor | None, image_mask: Tensor | None, text: Tensor | None, text_mask: Tensor | None
    ) -> FusionOutput:
        x, mask = (image, image_mask) if self.modality == "image" else (text, text_mask)
        if x is None or x.dim() != 3 or x.shape[-1] != self.dim:
            shape = None if x is None else tuple(x.shape)
            raise ValueError(f"{self.modality} features must be (b, m, {self.dim}), got {shape}")
        pooled = masked_mean(x, mask)  # (b, d)
        return FusionOutput(pooled, **{self.modality: pooled})


class SentimentModel(nn.Module):
    """Image + text classification assembled from parts: multimodal sentiment.

    ``logits = head(fusion(image_encoder(image), text_encoder(text)).fused)``, as the
    attention-fusion models of multimodal sentiment analysis (e.g. Xu & Mao, "MultiSentiNet",
    CIKM 2017; Tsai et al., MulT, ACL 2019, arXiv:1906.00295). A unimodal baseline leaves
    one encoder out (None) and pools the other with :class:`UnimodalPooling`.

    Args:
        image_encoder: module ``(b, 3, H, W) -> (features (b, n, d_v), mask (b, n), ...)``,
            e.g. :class:`vlkit.vision.ImageEncoder`; None for a text-only model.
        text_encoder: module ``(ids (b, l), mask (b, l)) -> (features (b, l, d_q), mask)``,
            e.g. :class:`vlkit.text.LSTMTextEncoder` or :class:`vlkit.text.HFTextEncoder`;
            None for an image-only model.
        fusion: any layer of :mod:`vlkit.fusion` (both encoders), or a
            :class:`UnimodalPooling` of the one encoder's modality.
        head: module ``(b, fusion.output_dim) -> (b, K)``, e.g.
            :class:`vlkit.models.ClassificationHead`.

    Shapes:
        ``forward(image: (b, 3, H, W) float, text_ids: (b, l) int64, text_mask: (b, l) bool |
        None) -> SentimentOutput``; the input of a left-out encoder is not read.

    Raises:
        ValueError: no encoder, or one encoder without a :class:`UnimodalPooling` of its
            modality as the fusion.
    """

    def __init__(
        self,
        image_encoder: nn.Module | None,
        text_encoder: nn.Module | None,
        fusion: nn.Module,
        head: nn.Module,
    ) -> None:
        super().__init__()
        if image_encoder is None and text_encoder is None:
            raise ValueError("a sentiment model needs an image encoder, a text encoder or both")
        if image_encoder is None or text_encoder is None:
            modality = "image" if text_encoder is None else "text"
            if not isinstance(fusion, UnimodalPooling) or fusion.modality != modality:
                raise ValueError(
                    f"a {modality}-only model (the other encoder is None) needs "
                    f"fusion=UnimodalPooling(dim, {modality!r}), got {type(fusion).__name__}"
                )
        self.image_encoder, self.text_encoder, self.fusion, self.head = (
            image_encoder,
            text_encoder,
            fusion,
            head,
        )

    @property
    def modality(self) -> str:
        """``"both"``, ``"image"`` or ``"text"``: the inputs the model reads."""
        if self.image_encoder is not None and self.text_encoder is not None:
            return "both"
        return "image" if self.image_encoder is not None else "text"

    def forward(self, image: Tensor, text_ids: Tensor, text_mask: Tensor | None = None) -> SentimentOutput:
        image_features = image_mask = text_features = None
        if self.image_encoder is not None:
            image_features, image_mask = self.image_encoder(image)[:2]  # (b, n, d_v), (b, n)
        if self.text_encoder is not None:
            text_features, text_mask = self.text_encoder(text_ids, text_mask)[:2]  # (b, l, d_q), (b, l)
        fused = self.fusion(image_features, image_mask, text_features, text_mask)
        return SentimentOutput(self.head(fused.fused), fused.image_weights, fused.text_weights)


def _text_encoder(
    name: str,
    vocab_size: int | None,
    dim: int,
    embed_dim: int,
    text_model: str | None,
    text_freeze: bool | int,
    text_layer_lr_decay: float,
    text_dropout: float,
) -> nn.Module:
    """The text encoder of :func:`sentiment_small`: a Hugging Face model or a vlkit encoder."""
    if name == "hf":
        from vlkit.text.hf import HFTextEncoder

        return HFTextEncoder(text_model, freeze=text_freeze, layer_lr_decay=text_layer_lr_decay)
    if vocab_size is None:
        raise ValueError(
            f"text_encoder={name!r} needs vocab_size (the word vocabulary); with a Hugging Face "
            "tokenizer use text_encoder='hf'"
        )
    return create_text_encoder(name, vocab_size, dim, embed_dim=embed_dim, dropout=text_dropout)


@register_model
def sentiment_small(
    num_classes: int,
    vocab_size: int | None = None,
    modality: str = "both",
    fusion: str | dict[str, Any] = "cross_modal_attention",
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
    text_model: str | None = None,
    text_freeze: bool | int = False,
    text_layer_lr_decay: float = 1.0,
    text_dropout: float = 0.0,
    cbam: str | None = None,
    stn: str | int | None = None,
) -> SentimentModel:
    """A small multimodal sentiment model: timm backbone regions, a text encoder, a fusion
    layer (cross-modal attention by default, SPEC.md section 4) and an MLP class head; or a
    unimodal baseline built from the same parts.

    Args:
        num_classes: number of classes ``K`` (>= 2).
        vocab_size: size of the word vocabulary (padding included); None with ``text_encoder="hf"``.
        modality: ``"both"`` (fusion), ``"image"`` (image-only baseline: image encoder,
            global average pooling, head) or ``"text"`` (text-only: text encoder, mean
            pooling, head).
        fusion: for ``modality="both"``: a name of :data:`vlkit.fusion.FUSIONS` or a mapping
            with that ``name`` and the layer's arguments (as in :func:`vlkit.models.vqa_small`);
            it gets ``hidden_dim`` and ``dropout`` from here unless the mapping sets them.
        backbone, feature_index, pretrained, pretrained_file, packaged_weights,
            freeze_backbone, cbam, stn: the image encoder (see :func:`vlkit.models.vqa_small`).
        dim: width of the region features, and of the tokens of the vlkit text encoders.
        embed_dim: word embedding width of the LSTM.
        hidden_dim: the fusion's hidden width and the head's.
        dropout: dropout in the fusion and the head.
        text_encoder: ``"lstm"`` (default), ``"transformer"`` (vlkit's, from scratch) or
            ``"hf"`` (:class:`vlkit.text.HFTextEncoder`, a pretrained Hugging Face model whose
            width is its own, e.g. 384 for all-MiniLM-L6-v2).
        text_model: the Hugging Face model id / path for ``"hf"`` (None: the packaged
            all-MiniLM-L6-v2); :class:`vlkit.tasks.SentimentTask` sets it to the
            DataModule's tokenizer.
        text_freeze: ``"hf"`` only: freeze the whole encoder (True) or the embeddings and
            first k layers (an int).
        text_layer_lr_decay: ``"hf"`` only: layer-wise learning-rate decay in ``(0, 1]``.
        text_dropout: dropout inside the vlkit text encoders.

    Raises:
        ValueError: an unknown modality or fusion, fewer than two classes, a vlkit text
            encoder without ``vocab_size``, or a fusion argument the layer does not take.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {list(MODALITIES)}, got {modality!r}")
    if num_classes < 2:
        raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
    image_encoder = text = None
    if modality != "text":
        image_encoder = build_image_encoder(
            backbone,
            dim,
            feature_index,
            pretrained,
            pretrained_file,
            packaged_weights,
            freeze_backbone,
            cbam,
            stn,
        )
    if modality != "image":
        text = _text_encoder(
            text_encoder,
            vocab_size,
            dim,
            embed_dim,
            text_model,
            text_freeze,
            text_layer_lr_decay,
            text_dropout,
        )
    text_dim = getattr(text, "dim", dim)
    if modality == "both":
        fusion = {"name": fusion} if isinstance(fusion, str) else fusion
        if "name" not in fusion:
            raise ValueError(f"fusion must be a name or a mapping with a 'name' key, got {fusion!r}")
        kwargs = {"hidden_dim": hidden_dim, "dropout": dropout}
        kwargs.update((k, v) for k, v in fusion.items() if k != "name")
        fusion_layer = create_fusion(fusion["name"], dim, text_dim, **kwargs)
    else:
        fusion_layer = UnimodalPooling(dim if modality == "image" else text_dim, modality)
    head = ClassificationHead(fusion_layer.output_dim, num_classes, hidden_dim, dropout=dropout)
    return SentimentModel(image_encoder, text, fusion_layer, head)
