"""Fusion layers: two modalities in, joint representation out (equations: ``docs/mechanisms.md``).

Every fusion takes ``(image: (b, n, d_v), image_mask, text: (b, l, d_q), text_mask)``
with bool masks (True = attend) and returns a :class:`FusionOutput`; recipes name a fusion
by its standard name (:data:`FUSIONS`, :func:`create_fusion`).
"""

from vlkit.fusion.bilinear import MFB, MFH, MFBCoAttention, MFBOutput, signed_sqrt
from vlkit.fusion.coattention import AlternatingCoAttention, GuidedAttention, ParallelCoAttention
from vlkit.fusion.common import COMBINE_MODES, FusionOutput, check_fusion_inputs, combined_dim, masked_mean
from vlkit.fusion.crossmodal import (
    CROSS_MODAL_DIRECTIONS,
    CrossModalAttention,
    CrossModalTransformer,
    CrossModalTransformerLayer,
)
from vlkit.fusion.hierarchical import COATTENTION_KINDS, HierarchicalCoAttention
from vlkit.fusion.mcan import (
    MCAN,
    AttentionalReduction,
    GuidedAttentionUnit,
    ReductionOutput,
    SelfAttentionUnit,
)
from vlkit.fusion.registry import FUSIONS, FusionConfig, create_fusion, list_fusions
from vlkit.fusion.simple import GatedFusion, JointEmbedding

__all__ = [
    "COATTENTION_KINDS",
    "COMBINE_MODES",
    "CROSS_MODAL_DIRECTIONS",
    "FUSIONS",
    "MCAN",
    "MFB",
    "MFH",
    "AlternatingCoAttention",
    "AttentionalReduction",
    "CrossModalAttention",
    "CrossModalTransformer",
    "CrossModalTransformerLayer",
    "FusionConfig",
    "FusionOutput",
    "GatedFusion",
    "GuidedAttention",
    "GuidedAttentionUnit",
    "HierarchicalCoAttention",
    "JointEmbedding",
    "MFBCoAttention",
    "MFBOutput",
    "ParallelCoAttention",
    "ReductionOutput",
    "SelfAttentionUnit",
    "check_fusion_inputs",
    "combined_dim",
    "create_fusion",
    "list_fusions",
    "masked_mean",
    "signed_sqrt",
]
