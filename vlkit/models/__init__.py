"""Assembled models, their decoders and heads, and the model registry."""

from vlkit.models.captioning import CaptioningModel, caption_sat_small, caption_transformer_small
from vlkit.models.decoders import (
    DecoderOutput,
    DecoderStep,
    ShowAttendTellDecoder,
    TransformerCaptionDecoder,
    doubly_stochastic_penalty,
)
from vlkit.models.generation import GenerationOutput, beam_search, greedy_search, length_penalty
from vlkit.models.heads import ClassificationHead, VQAHead
from vlkit.models.registry import create_model, list_models, register_model
from vlkit.models.sentiment import (
    MODALITIES,
    SentimentModel,
    SentimentOutput,
    UnimodalPooling,
    sentiment_small,
)
from vlkit.models.vqa import VQAModel, VQAOutput, vqa_small

__all__ = [
    "MODALITIES",
    "CaptioningModel",
    "ClassificationHead",
    "DecoderOutput",
    "DecoderStep",
    "GenerationOutput",
    "SentimentModel",
    "SentimentOutput",
    "ShowAttendTellDecoder",
    "TransformerCaptionDecoder",
    "UnimodalPooling",
    "VQAHead",
    "VQAModel",
    "VQAOutput",
    "beam_search",
    "caption_sat_small",
    "caption_transformer_small",
    "create_model",
    "doubly_stochastic_penalty",
    "greedy_search",
    "length_penalty",
    "list_models",
    "register_model",
    "sentiment_small",
    "vqa_small",
]
