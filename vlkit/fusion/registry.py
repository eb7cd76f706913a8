"""Fusion layers by their standard names, so a recipe swaps the fusion with one YAML line.

:data:`FUSIONS` registers every layer of :mod:`vlkit.fusion`; :class:`FusionConfig` is a name and
the layer's arguments, e.g. ``{name: mcan, depth: 2}``; the model that assembles the parts gives
``image_dim`` and ``text_dim``. Every layer is called as ``fusion(image, image_mask, text,
text_mask)`` and returns a :class:`vlkit.fusion.FusionOutput` whose ``fused`` is
``fusion.output_dim`` wide. The equations are in ``docs/mechanisms.md``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vlkit.config import PartConfig, Registry
from vlkit.fusion.bilinear import MFBCoAttention
from vlkit.fusion.coattention import AlternatingCoAttention, ParallelCoAttention
from vlkit.fusion.crossmodal import CrossModalAttention, CrossModalTransformer
from vlkit.fusion.hierarchical import HierarchicalCoAttention
from vlkit.fusion.mcan import MCAN
from vlkit.fusion.simple import GatedFusion, JointEmbedding

__all__ = ["FUSIONS", "FusionConfig", "create_fusion", "list_fusions"]

#: Every fusion layer by name; ``FUSIONS[name]`` is ``(class, arguments the name fixes)``.
#: Papers are in each class's docstring.
FUSIONS = Registry("fusion", provided=("image_dim", "text_dim"))
FUSIONS.register("parallel_coattention", ParallelCoAttention)  # Lu et al. 2016
FUSIONS.register("alternating_coattention", AlternatingCoAttention)  # Lu et al. 2016
FUSIONS.register("hierarchical_coattention", HierarchicalCoAttention)  # Lu et al. 2016
FUSIONS.register("cross_modal_attention", CrossModalAttention)  # one direction
FUSIONS.register("cross_modal_transformer", CrossModalTransformer)  # MulT, Tsai et al. 2019
FUSIONS.register("mcan", MCAN)  # Yu et al. 2019
FUSIONS.register("mfb", MFBCoAttention, order=1)  # Yu et al. 2017
FUSIONS.register("mfh", MFBCoAttention, order=2)  # Yu et al. 2018
FUSIONS.register("gated", GatedFusion)  # Arevalo et al. 2017
FUSIONS.register("concat", JointEmbedding, mode="concat")
FUSIONS.register("sum", JointEmbedding, mode="sum")
FUSIONS.register("product", JointEmbedding, mode="product")  # Antol et al. 2015


class FusionConfig(PartConfig):
    """A fusion layer: its name in :data:`FUSIONS` and every argument of the layer.

    ``FusionConfig("mcan", depth=2)``, or from YAML ``{name: mcan, depth: 2}``; the arguments not
    given take the layer's defaults (``FUSIONS.describe("mcan")`` lists them). The layer's
    ``image_dim`` and ``text_dim`` come from the encoders when the model is built. For the
    co-attention layers, ``image_context: reinforce`` (or ``gumbel``) makes the image attention
    hard (Xu et al., ICML 2015).

    Raises:
        ValueError: an unknown name (the message lists the registered ones), an argument the
            layer does not take (the message lists those it takes) or a value of the wrong type.
    """

    registry = FUSIONS
    default_name = "parallel_coattention"


def list_fusions() -> list[str]:
    """The registered fusion names, sorted."""
    return FUSIONS.names()


def create_fusion(name: str, image_dim: int, text_dim: int, **kwargs: Any) -> nn.Module:
    """Build the fusion layer registered as ``name``: ``FusionConfig(name, **kwargs).build(...)``.

    Args:
        name: a name of :data:`FUSIONS` (:func:`list_fusions`).
        image_dim: width ``d_v`` of the image regions ``(b, n, d_v)``.
        text_dim: width ``d_q`` of the text tokens ``(b, l, d_q)``.
        **kwargs: the layer's other arguments; every layer takes ``hidden_dim`` and ``dropout``.

    Returns:
        The layer; its ``output_dim`` is the width of ``FusionOutput.fused``.

    Raises:
        ValueError: see :class:`FusionConfig` (an argument the name fixes, e.g. ``order`` for
            ``"mfb"``, is one the layer does not take).
    """
    return FusionConfig(name, **kwargs).build(image_dim=image_dim, text_dim=text_dim)
