"""Visual question answering: image encoder + text encoder + fusion + answer head.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d`` width, ``K`` answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from torch import Tensor, nn

from vlkit.fusion import FusionConfig
from vlkit.models.parts import HeadConfig, build_image_encoder, build_text_encoder
from vlkit.text import TextEncoderConfig
from vlkit.vision import ImageEncoderConfig

__all__ = ["VQAModel", "VQAOutput"]


class VQAOutput(NamedTuple):
    """Output of :class:`VQAModel`.

    Attributes:
        logits: ``(b, K)`` answer logits.
        image_weights: ``(b, n)`` attention over image regions, or None if the fusion has none.
        text_weights: ``(b, l)`` attention over question tokens, or None.
        grid_size: ``(h, w)`` of the image regions' grid (``h · w = n``), or None.
    """

    logits: Tensor
    image_weights: Tensor | None
    text_weights: Tensor | None
    grid_size: tuple[int, int] | None = None


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
        head: module ``(b, fusion.output_dim) -> (b, K)``, e.g. :class:`vlkit.models.ClassificationHead`.

    Shapes:
        ``forward(image: (b, 3, H, W) float, question_ids: (b, l) int64,
        question_mask: (b, l) bool | None) -> VQAOutput``.

    :meth:`from_config` builds the parts from their configurations.
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
        encoded = self.image_encoder(image)
        image_features, image_mask = encoded[:2]  # (b, n, d_v), (b, n)
        text_features, text_mask = self.text_encoder(question_ids, question_mask)[:2]  # (b, l, d_q)
        fused = self.fusion(image_features, image_mask, text_features, text_mask)
        grid = getattr(encoded, "grid_size", None)
        return VQAOutput(self.head(fused.fused), fused.image_weights, fused.text_weights, grid)

    @classmethod
    def from_config(
        cls,
        num_answers: int,
        vocab_size: int | None = None,
        image_encoder: ImageEncoderConfig | Mapping[str, Any] | str | None = None,
        text_encoder: TextEncoderConfig | Mapping[str, Any] | str | None = None,
        fusion: FusionConfig | Mapping[str, Any] | str | None = None,
        head: HeadConfig | Mapping[str, Any] | str | None = None,
        pretrained: bool = True,
        local_files: Mapping[str, str] | None = None,
    ) -> VQAModel:
        """A VQA model built from its part configurations (each also as a mapping or a name;
        None for the part's default): the fusion gets the encoders' widths, the head the
        fusion's ``output_dim`` and ``num_answers`` classes.

        Args:
            num_answers: size ``K`` of the answer vocabulary.
            vocab_size: size of the question vocabulary (padding included); None with a
                Hugging Face text encoder.
            image_encoder, text_encoder, fusion, head: the parts' configurations.
            pretrained: False builds the image backbone and a Hugging Face text encoder without
                their pretrained weights (a checkpoint's weights replace them).
            local_files: ``{Hugging Face name: folder}`` of saved configuration and tokenizer
                files (see :func:`vlkit.models.parts.build_text_encoder`).

        Raises:
            ValueError: an invalid part configuration (the message says what is valid).
        """
        image = build_image_encoder(image_encoder, pretrained)
        text = build_text_encoder(text_encoder, vocab_size, pretrained, local_files)
        fusion_layer = FusionConfig.parse(fusion).build(image_dim=image.dim, text_dim=text.dim)
        answer_head = HeadConfig.parse(head).build(input_dim=fusion_layer.output_dim, num_classes=num_answers)
        return cls(image, text, fusion_layer, answer_head)
