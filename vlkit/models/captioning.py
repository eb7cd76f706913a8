"""Image captioning: image encoder + caption decoder (+ greedy / beam search).

Shape legend: ``b`` batch, ``n`` regions, ``T`` caption steps, ``L`` generated length,
``V`` vocabulary.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlkit.models.decoders import DecoderOutput, ShowAttendTellDecoder, TransformerCaptionDecoder
from vlkit.models.generation import GenerationOutput, beam_search, greedy_search
from vlkit.models.parts import build_image_encoder
from vlkit.models.registry import register_model

__all__ = ["CaptioningModel", "caption_sat_small", "caption_transformer_small"]


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


@register_model
def caption_sat_small(
    vocab_size: int,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    backbone: str = "resnet10t",
    feature_index: int = 2,
    dim: int = 256,
    embed_dim: int = 256,
    hidden_dim: int = 512,
    attention_dim: int = 256,
    dropout: float = 0.5,
    hard_attention: str | None = None,
    gate: bool = True,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    packaged_weights: bool = False,
    freeze_backbone: bool | int = False,
    cbam: str | None = None,
    stn: str | int | None = None,
) -> CaptioningModel:
    """Show, Attend and Tell (Xu et al., ICML 2015, arXiv:1502.03044): timm backbone regions and
    an LSTM decoder with soft (or hard) attention and the gating scalar β.

    Args:
        vocab_size, bos_id, eos_id, pad_id: from the caption tokenizer.
        backbone, feature_index, pretrained, pretrained_file, packaged_weights,
            freeze_backbone, cbam, stn: the image encoder (see :class:`vlkit.vision.ImageEncoder`).
        dim: region width ``d_v``.
        embed_dim, hidden_dim, attention_dim, dropout, hard_attention, gate: the decoder (see
            :class:`vlkit.models.ShowAttendTellDecoder`).
    """
    return CaptioningModel(
        build_image_encoder(
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
        ShowAttendTellDecoder(
            vocab_size, dim, embed_dim, hidden_dim, attention_dim, dropout, hard_attention, gate, pad_id
        ),
        bos_id,
        eos_id,
        pad_id,
    )


@register_model
def caption_transformer_small(
    vocab_size: int,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    backbone: str = "resnet10t",
    feature_index: int = 2,
    dim: int = 256,
    depth: int = 2,
    num_heads: int = 4,
    mlp_ratio: float = 4.0,
    dropout: float = 0.1,
    max_length: int = 64,
    tie_embeddings: bool = True,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    packaged_weights: bool = False,
    freeze_backbone: bool | int = False,
    cbam: str | None = None,
    stn: str | int | None = None,
) -> CaptioningModel:
    """Timm backbone regions and a Transformer decoder with cross-attention to them
    (Vaswani et al., NeurIPS 2017, arXiv:1706.03762).

    Args:
        vocab_size, bos_id, eos_id, pad_id: from the caption tokenizer.
        backbone, feature_index, pretrained, pretrained_file, packaged_weights,
            freeze_backbone, cbam, stn: the image encoder (see :class:`vlkit.vision.ImageEncoder`).
        dim: region and decoder width.
        depth, num_heads, mlp_ratio, dropout, max_length, tie_embeddings: the decoder (see
            :class:`vlkit.models.TransformerCaptionDecoder`).
    """
    return CaptioningModel(
        build_image_encoder(
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
        TransformerCaptionDecoder(
            vocab_size, dim, dim, depth, num_heads, mlp_ratio, dropout, max_length, tie_embeddings, pad_id
        ),
        bos_id,
        eos_id,
        pad_id,
    )
