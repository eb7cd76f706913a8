"""Image captioning: image encoder + caption decoder (+ greedy / beam search).

Shape legend: ``b`` batch, ``n`` regions, ``T`` caption steps, ``L`` generated length,
``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from vlkit.models.decoders import DecoderOutput
from vlkit.models.generation import GenerationOutput, beam_search, greedy_search
from vlkit.models.parts import DecoderConfig, build_image_encoder
from vlkit.vision import ImageEncoderConfig

__all__ = ["CaptioningModel"]


class CaptioningModel(nn.Module):
    """An encoder–decoder captioning model (Vinyals et al., CVPR 2015; Xu et al., ICML 2015).

    ``decoder(image_encoder(image), tokens)``: the image encoder turns the image into
    regions, the decoder predicts each next token while attending over them.

    Args:
        image_encoder: module ``(b, 3, H, W) -> (features (b, n, d_v), mask (b, n), ...)``,
            e.g. :class:`vlkit.vision.ImageEncoder`.
        decoder: a caption decoder (:class:`vlkit.models.ShowAttendTellDecoder`,
            :class:`vlkit.models.TransformerCaptionDecoder`, or any module with their
            ``forward`` / ``init_state`` / ``step``).
        bos_id, eos_id, pad_id: the tokenizer's special token ids.

    Shapes:
        ``forward(image: (b, 3, H, W) float, tokens: (b, T) int64 starting with <bos>,
        token_mask: (b, T) bool | None) -> DecoderOutput(logits (b, T, V), ...)``: the logits
        at step ``t`` predict ``tokens[:, t + 1]``.
        ``generate(image, max_length, beam_size, alpha) -> GenerationOutput``;
        ``search(features, feature_mask, ...)`` decodes regions already encoded.

    :meth:`from_config` builds the parts from their configurations.
    """

    def __init__(
        self, image_encoder: nn.Module, decoder: nn.Module, bos_id: int, eos_id: int, pad_id: int = 0
    ) -> None:
        super().__init__()
        self.image_encoder, self.decoder = image_encoder, decoder
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id

    def forward(self, image: Tensor, tokens: Tensor, token_mask: Tensor | None = None) -> DecoderOutput:
        features, feature_mask = self.image_encoder(image)[:2]  # (b, n, d_v), (b, n)
        return self.decoder(features, feature_mask, tokens, token_mask)

    def generate(
        self, image: Tensor, max_length: int = 20, beam_size: int = 1, alpha: float = 0.0
    ) -> GenerationOutput:
        """Caption ``image`` with greedy (``beam_size=1``) or beam search (see :mod:`vlkit.models.generation`).

        Raises:
            ValueError: out-of-range settings.
        """
        features, feature_mask = self.image_encoder(image)[:2]
        return self.search(features, feature_mask, max_length, beam_size, alpha)

    def search(
        self,
        features: Tensor,
        feature_mask: Tensor | None,
        max_length: int = 20,
        beam_size: int = 1,
        alpha: float = 0.0,
    ) -> GenerationOutput:
        """:meth:`generate` from regions ``(b, n, d_v)`` the image encoder already computed.

        Raises:
            ValueError: out-of-range settings.
        """
        ids = (self.bos_id, self.eos_id, self.pad_id)
        if beam_size == 1:
            return greedy_search(self.decoder, features, feature_mask, *ids, max_length, alpha)
        return beam_search(self.decoder, features, feature_mask, *ids, max_length, beam_size, alpha)

    @classmethod
    def from_config(
        cls,
        vocab_size: int,
        bos_id: int,
        eos_id: int,
        pad_id: int = 0,
        image_encoder: ImageEncoderConfig | Mapping[str, Any] | str | None = None,
        decoder: DecoderConfig | Mapping[str, Any] | str | None = None,
        pretrained: bool = True,
    ) -> CaptioningModel:
        """A captioning model built from its part configurations (each also as a mapping or a
        name; None for the part's default: Show, Attend and Tell).

        Args:
            vocab_size, bos_id, eos_id, pad_id: from the caption tokenizer.
            image_encoder, decoder: the parts' configurations; the decoder gets the image
                encoder's width as ``feature_dim``.
            pretrained: False builds the image backbone without its pretrained weights (a
                checkpoint's weights replace them).

        Raises:
            ValueError: an invalid part configuration (the message says what is valid).
        """
        image = build_image_encoder(image_encoder, pretrained)
        text_decoder = DecoderConfig.parse(decoder).build(
            vocab_size=vocab_size, feature_dim=image.dim, pad_id=pad_id
        )
        return cls(image, text_decoder, bos_id, eos_id, pad_id)
