"""Assembled models, their part configurations, decoders and heads, and the model presets."""

from vlkit.models import presets as _presets  # noqa: F401  (registers the presets)
from vlkit.models.captioning import CaptioningModel
from vlkit.models.decoders import (
    DecoderOutput,
    DecoderStep,
    ShowAttendTellDecoder,
    TransformerCaptionDecoder,
    doubly_stochastic_penalty,
)
from vlkit.models.generation import GenerationOutput, beam_search, greedy_search, length_penalty
from vlkit.models.heads import ClassificationHead, VQAHead
from vlkit.models.parts import DECODERS, HEADS, DecoderConfig, HeadConfig
from vlkit.models.registry import create_model, list_models, model_preset, register_model
from vlkit.models.sentiment import MODALITIES, SentimentModel, SentimentOutput, UnimodalPooling
from vlkit.models.vqa import VQAModel, VQAOutput

__all__ = [
    "DECODERS",
    "HEADS",
    "MODALITIES",
    "CaptioningModel",
    "ClassificationHead",
    "DecoderConfig",
    "DecoderOutput",
    "DecoderStep",
    "GenerationOutput",
    "HeadConfig",
    "SentimentModel",
    "SentimentOutput",
    "ShowAttendTellDecoder",
    "TransformerCaptionDecoder",
    "UnimodalPooling",
    "VQAHead",
    "VQAModel",
    "VQAOutput",
    "beam_search",
    "create_model",
    "doubly_stochastic_penalty",
    "greedy_search",
    "length_penalty",
    "list_models",
    "model_preset",
    "register_model",
]
