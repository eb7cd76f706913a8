"""Assembled models and the model registry."""

from vlkit.models.heads import VQAHead
from vlkit.models.registry import create_model, list_models, register_model
from vlkit.models.vqa import VQAModel, VQAOutput, vqa_small

__all__ = [
    "VQAHead",
    "VQAModel",
    "VQAOutput",
    "create_model",
    "list_models",
    "register_model",
    "vqa_small",
]
