"""Fusion layers: two modalities in, joint representation out.

Every fusion takes ``(image: (b, n, d_v), image_mask, text: (b, l, d_q), text_mask)``
with bool masks (True = attend) and returns a NamedTuple.
"""

from vlkit.fusion.coattention import (
    AlternatingCoAttention,
    CoAttentionOutput,
    GuidedAttention,
    ParallelCoAttention,
)

__all__ = ["AlternatingCoAttention", "CoAttentionOutput", "GuidedAttention", "ParallelCoAttention"]
