"""A registry of model builders: ``create_model(name, **overrides)`` and ``list_models(pattern)``.

Names follow ``<task>_<fusion>_<size>``, e.g. ``vqa_parallel_coattn_small``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from torch import nn

__all__ = ["create_model", "list_models", "register_model"]

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register a builder function under its own name.

    Raises:
        ValueError: if the name is already registered.
    """
    if fn.__name__ in _MODELS:
        raise ValueError(f"model {fn.__name__!r} is already registered")
    _MODELS[fn.__name__] = fn
    return fn


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of registered models matching a shell-style ``pattern`` (e.g. ``"vqa_*"``)."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def create_model(name: str, **overrides) -> nn.Module:
    """Build a registered model; ``overrides`` go to its builder (see the builder's docstring).

    Raises:
        ValueError: for an unknown name; the message lists the registered ones.
    """
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; registered models: {list_models()}")
    return _MODELS[name](**overrides)
