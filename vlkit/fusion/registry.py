"""Fusion layers by their standard names, so a recipe swaps the fusion with one YAML line.

``create_fusion("mcan", image_dim=256, text_dim=256, hidden_dim=256, depth=2)`` builds any
layer of :data:`FUSIONS`; every one is called as ``fusion(image, image_mask, text, text_mask)``
and returns a :class:`vlkit.fusion.FusionOutput` whose ``fused`` is ``fusion.output_dim`` wide.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from vlkit.fusion.bilinear import MFBCoAttention
from vlkit.fusion.coattention import AlternatingCoAttention, ParallelCoAttention
from vlkit.fusion.crossmodal import CrossModalAttention, CrossModalTransformer
from vlkit.fusion.hierarchical import HierarchicalCoAttention
from vlkit.fusion.mcan import MCAN
from vlkit.fusion.simple import GatedFusion, JointEmbedding

__all__ = ["FUSIONS", "create_fusion", "list_fusions"]

#: name -> (class, keyword arguments the name fixes). Papers are in each class's docstring.
FUSIONS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    "parallel_coattention": (ParallelCoAttention, {}),  # Lu et al. 2016
    "alternating_coattention": (AlternatingCoAttention, {}),  # Lu et al. 2016
    "hierarchical_coattention": (HierarchicalCoAttention, {}),  # Lu et al. 2016
    "cross_modal_attention": (CrossModalAttention, {}),  # SPEC.md section 4, one direction
    "cross_modal_transformer": (CrossModalTransformer, {}),  # MulT, Tsai et al. 2019
    "mcan": (MCAN, {}),  # Yu et al. 2019
    "mfb": (MFBCoAttention, {"order": 1}),  # Yu et al. 2017
    "mfh": (MFBCoAttention, {"order": 2}),  # Yu et al. 2018
    "gated": (GatedFusion, {}),  # Arevalo et al. 2017
    "concat": (JointEmbedding, {"mode": "concat"}),
    "sum": (JointEmbedding, {"mode": "sum"}),
    "product": (JointEmbedding, {"mode": "product"}),  # Antol et al. 2015
}


def list_fusions() -> list[str]:
    """The registered fusion names, sorted."""
    return sorted(FUSIONS)


def _parameters(cls: type[nn.Module]) -> list[str]:
    return [
        p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "image_dim", "text_dim")
    ]


def create_fusion(name: str, image_dim: int, text_dim: int, **kwargs: Any) -> nn.Module:
    """Build the fusion layer registered as ``name``.

    Args:
        name: a key of :data:`FUSIONS` (:func:`list_fusions`).
        image_dim: width ``d_v`` of the image regions ``(b, n, d_v)``.
        text_dim: width ``d_q`` of the text tokens ``(b, l, d_q)``.
        **kwargs: the layer's other arguments; every layer takes ``hidden_dim`` and ``dropout``.

    Returns:
        The layer; its ``output_dim`` is the width of ``FusionOutput.fused``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones), an argument the layer
            does not take (the message lists those it takes), or one the name fixes (e.g.
            ``order`` for ``"mfb"``).
    """
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}; valid: {list_fusions()}")
    cls, fixed = FUSIONS[name]
    accepted = [p for p in _parameters(cls) if p not in fixed]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"fusion {name!r} ({cls.__name__}) takes no argument(s) {unknown}; it takes {accepted}"
            + (f" (the name fixes {fixed})" if fixed else "")
        )
    return cls(image_dim, text_dim, **fixed, **kwargs)
