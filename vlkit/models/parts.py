"""The parts a model is configured as, and how the models build them.

Every assembled model (:class:`vlkit.models.VQAModel`, :class:`vlkit.models.SentimentModel`,
:class:`vlkit.models.CaptioningModel`) is configured as typed part configurations:
:class:`vlkit.vision.ImageEncoderConfig`, :class:`vlkit.text.TextEncoderConfig`,
:class:`vlkit.fusion.FusionConfig`, and here :class:`HeadConfig` (answer / class heads) and
:class:`DecoderConfig` (caption decoders). The functions below build them with what the model
knows: the vocabulary size, the encoders' widths, and whether pretrained weights are wanted
(``pretrained=False`` when a checkpoint's weights replace them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from vlkit.config import PartConfig, Registry
from vlkit.models.decoders import ShowAttendTellDecoder, TransformerCaptionDecoder
from vlkit.models.heads import ClassificationHead
from vlkit.text import PACKAGED_TEXT_MODEL, TextEncoderConfig
from vlkit.vision import ImageEncoderConfig

__all__ = [
    "DECODERS",
    "HEADS",
    "DecoderConfig",
    "HeadConfig",
    "build_image_encoder",
    "build_text_encoder",
    "hf_model_name",
]

#: Heads ``(b, input_dim) -> (b, num_classes)``; the model gives ``input_dim`` (the fusion's
#: ``output_dim``) and ``num_classes`` (answers or classes).
HEADS = Registry("head", provided=("input_dim", "num_classes"))
HEADS.register("mlp", ClassificationHead)  # the answer MLP of Lu et al. 2016

#: Caption decoders; the model gives ``vocab_size``, ``feature_dim`` (the image encoder's
#: ``dim``) and ``pad_id`` (the tokenizer's).
DECODERS = Registry("decoder", provided=("vocab_size", "feature_dim", "pad_id"))
DECODERS.register("show_attend_tell", ShowAttendTellDecoder)  # Xu et al. 2015
DECODERS.register("transformer", TransformerCaptionDecoder)  # Vaswani et al. 2017


class HeadConfig(PartConfig):
    """A classification head: its name in :data:`HEADS` (``"mlp"``, the default:
    :class:`vlkit.models.ClassificationHead`) and its arguments (``hidden_dim``, ``dropout``).

    Raises:
        ValueError: an argument the head does not take or a value of the wrong type.
    """

    registry = HEADS
    default_name = "mlp"


class DecoderConfig(PartConfig):
    """A caption decoder: its name in :data:`DECODERS` and every argument of the decoder.

    ``"show_attend_tell"`` (the default): :class:`vlkit.models.ShowAttendTellDecoder` (LSTM with
    soft or hard attention over regions and the gate β); ``"transformer"``:
    :class:`vlkit.models.TransformerCaptionDecoder`.

    Raises:
        ValueError: an unknown name, an argument the decoder does not take, or a value of the
            wrong type (the message lists what is valid).
    """

    registry = DECODERS
    default_name = "show_attend_tell"


def build_image_encoder(
    config: ImageEncoderConfig | Mapping[str, Any] | str | None, pretrained: bool = True
) -> nn.Module:
    """The image encoder of ``config``; with ``pretrained=False`` without its pretrained weights
    (same architecture, random weights, for a checkpoint's weights to replace).

    Raises:
        ValueError: see :class:`vlkit.vision.ImageEncoderConfig`.
    """
    config = ImageEncoderConfig.parse(config)
    return (config if pretrained else config.without_pretrained_weights()).build()


def hf_model_name(config: TextEncoderConfig) -> str | None:
    """The Hugging Face model a text encoder config loads (``"hf"``), else None."""
    if config.name != "hf":
        return None
    return config.model_name_or_path or PACKAGED_TEXT_MODEL


def build_text_encoder(
    config: TextEncoderConfig | Mapping[str, Any] | str | None,
    vocab_size: int | None,
    pretrained: bool = True,
    local_files: Mapping[str, str] | None = None,
) -> nn.Module:
    """The text encoder of ``config``.

    Args:
        config: the encoder's configuration.
        vocab_size: the word vocabulary's size (padding included), for the word-level encoders.
        pretrained: False builds a Hugging Face encoder from its configuration, without weights.
        local_files: ``{Hugging Face name: local folder}`` of saved configuration and tokenizer
            files, read instead of the Hub or the packaged copy (as in a checkpoint).

    Raises:
        ValueError: see :class:`vlkit.text.TextEncoderConfig`; a word-level encoder without
            ``vocab_size``.
    """
    config = TextEncoderConfig.parse(config)
    name = hf_model_name(config)
    if name is not None:
        return config.build(pretrained=pretrained, local_files=(local_files or {}).get(name))
    if vocab_size is None:
        raise ValueError(
            f"text encoder {config.name!r} needs the word vocabulary's size; with a Hugging Face "
            "tokenizer use the text encoder 'hf'"
        )
    return config.build(vocab_size=vocab_size)
