"""Assembled models and the model registry."""

from vlkit.models.heads import VQAHead
from vlkit.models.registry import create_model, list_models, register_model
from vlkit.models.vqa import COMBINE_MODES, VQAModel, VQAOutput

__all__ = [
    "COMBINE_MODES",
    "VQAHead",
    "VQAModel",
    "VQAOutput",
    "create_model",
    "list_models",
    "register_model",
]
