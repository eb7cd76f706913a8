"""A registry of model presets: ``create_model(name, **overrides)`` and ``list_models(pattern)``.

A preset is a model class and the configurations of its parts; :func:`create_model` builds it
with the model class's ``from_config``, the data-dependent sizes (``num_answers``,
``vocab_size``, ...) and any part given in ``overrides`` replacing the preset's. Names follow
``<task>_<size>`` (e.g. ``vqa_small``); the presets are in :mod:`vlkit.models.presets`.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from torch import nn

__all__ = ["create_model", "list_models", "model_preset", "register_model"]

_MODELS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {}


def register_model(name: str, model_class: type[nn.Module], **parts: Any) -> None:
    """Register the preset ``name``: ``model_class.from_config(**parts, ...)``.

    Args:
        name: the preset's name.
        model_class: a model class with a ``from_config`` class method.
        **parts: its part configurations (configs, mappings or names), e.g. ``fusion="mcan"``.

    Raises:
        ValueError: if the name is already registered.
    """
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = (model_class, dict(parts))


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching a shell-style ``pattern`` (e.g. ``"vqa_*"``)."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def model_preset(name: str) -> tuple[type[nn.Module], dict[str, Any]]:
    """``(model class, part configurations)`` of the preset ``name``.

    Raises:
        ValueError: for an unknown name; the message lists the registered ones.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {list_models()}")
    model_class, parts = _MODELS[name]
    return model_class, dict(parts)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered preset: ``overrides`` give the model's data-dependent sizes (e.g.
    ``num_answers``, ``vocab_size``) and may replace any of its parts (``fusion="mfb"``, or a
    whole ``image_encoder={...}`` mapping); see the model class's ``from_config``.

    Raises:
        ValueError: for an unknown name (the message lists the registered ones) or an invalid
            part configuration.
    """
    model_class, parts = model_preset(name)
    return model_class.from_config(**{**parts, **overrides})
