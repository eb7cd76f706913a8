"""Multimodal sentiment: image encoder + text encoder + fusion + class head, and unimodal baselines.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d`` width, ``K`` classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import Tensor, nn

from vlkit.fusion import FusionConfig, FusionOutput
from vlkit.fusion.common import masked_mean
from vlkit.models.parts import HeadConfig, build_image_encoder, build_text_encoder
from vlkit.text import TextEncoderConfig
from vlkit.vision import ImageEncoderConfig

__all__ = ["MODALITIES", "SentimentModel", "SentimentOutput", "UnimodalPooling"]

#: The inputs a sentiment model can use: both (fusion) or one (a unimodal baseline).
MODALITIES = ("both", "image", "text")


class SentimentOutput(NamedTuple):
    """Output of :class:`SentimentModel`.

    Attributes:
        logits: ``(b, K)`` class logits.
        image_weights: ``(b, n)`` attention over image regions, or None if the fusion has none.
        text_weights: ``(b, l)`` attention over text tokens, or None.
        grid_size: ``(h, w)`` of the image regions' grid (``h · w = n``), or None without an
            image encoder.
    """

    logits: Tensor
    image_weights: Tensor | None
    text_weights: Tensor | None
    grid_size: tuple[int, int] | None = None


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

    :meth:`from_config` builds the parts from their configurations.
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
        image_features = image_mask = text_features = grid = None
        if self.image_encoder is not None:
            encoded = self.image_encoder(image)
            image_features, image_mask = encoded[:2]  # (b, n, d_v), (b, n)
            grid = getattr(encoded, "grid_size", None)
        if self.text_encoder is not None:
            text_features, text_mask = self.text_encoder(text_ids, text_mask)[:2]  # (b, l, d_q), (b, l)
        fused = self.fusion(image_features, image_mask, text_features, text_mask)
        return SentimentOutput(self.head(fused.fused), fused.image_weights, fused.text_weights, grid)

    @classmethod
    def from_config(
        cls,
        num_classes: int,
        vocab_size: int | None = None,
        image_encoder: ImageEncoderConfig | Mapping[str, Any] | str | None = None,
        text_encoder: TextEncoderConfig | Mapping[str, Any] | str | None = None,
        fusion: FusionConfig | Mapping[str, Any] | str | None = None,
        head: HeadConfig | Mapping[str, Any] | str | None = None,
        modality: str = "both",
        pretrained: bool = True,
        local_files: Mapping[str, str] | None = None,
    ) -> SentimentModel:
        """A sentiment model (or a unimodal baseline) built from its part configurations (each
        also as a mapping or a name; None for the part's default).

        Args:
            num_classes: number of classes ``K`` (>= 2).
            vocab_size: size of the word vocabulary (padding included); None with a Hugging Face
                text encoder or ``modality="image"``.
            image_encoder, text_encoder, fusion, head: the parts' configurations; the fusion
                (default: cross-modal attention, each region over the words) gets the encoders'
                widths, the head the fusion's ``output_dim``.
            modality: ``"both"`` (fusion), ``"image"`` (image-only baseline: the image encoder,
                global average pooling, the head; ``text_encoder`` and ``fusion`` are not built)
                or ``"text"`` (text-only: the text encoder, mean pooling, the head).
            pretrained: False builds the image backbone and a Hugging Face text encoder without
                their pretrained weights (a checkpoint's weights replace them).
            local_files: ``{Hugging Face name: folder}`` of saved configuration and tokenizer
                files (see :func:`vlkit.models.parts.build_text_encoder`).

        Raises:
            ValueError: an unknown modality, fewer than two classes, or an invalid part
                configuration (the message says what is valid).
        """
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {list(MODALITIES)}, got {modality!r}")
        if num_classes < 2:
            raise ValueError(f"a classifier needs num_classes >= 2, got {num_classes}")
        image = build_image_encoder(image_encoder, pretrained) if modality != "text" else None
        text = (
            build_text_encoder(text_encoder, vocab_size, pretrained, local_files)
            if modality != "image"
            else None
        )
        if modality == "both":
            fusion = fusion if fusion is not None else {"name": "cross_modal_attention"}
            fusion_layer = FusionConfig.parse(fusion).build(image_dim=image.dim, text_dim=text.dim)
        else:
            fusion_layer = UnimodalPooling(image.dim if text is None else text.dim, modality)
        class_head = HeadConfig.parse(head).build(input_dim=fusion_layer.output_dim, num_classes=num_classes)
        return cls(image, text, fusion_layer, class_head)
