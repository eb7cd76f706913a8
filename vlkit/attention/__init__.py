"""Attention primitives: masks, score functions, attention pooling, multi-head, positions.

Masks are ``torch.bool`` with True = attend, everywhere in vlkit.
"""

from vlkit.attention.masking import check_mask, lengths_to_mask, masked_softmax
from vlkit.attention.multihead import MultiHeadAttention, MultiHeadAttentionOutput
from vlkit.attention.pooling import (
    AdditiveAttention,
    Attention,
    AttentionOutput,
    ConcatAttention,
    DotProductAttention,
    GeneralAttention,
    ScaledDotProductAttention,
)
from vlkit.attention.position import (
    SinusoidalPositionalEncoding,
    sinusoidal_position_encoding,
    sinusoidal_position_encoding_2d,
)
from vlkit.attention.scoring import (
    SCORE_FUNCTIONS,
    AdditiveScore,
    ConcatScore,
    DotProductScore,
    GeneralScore,
    ScaledDotProductScore,
    create_score,
)

__all__ = [
    "check_mask",
    "lengths_to_mask",
    "masked_softmax",
    "MultiHeadAttention",
    "MultiHeadAttentionOutput",
    "Attention",
    "AttentionOutput",
    "AdditiveAttention",
    "ConcatAttention",
    "DotProductAttention",
    "GeneralAttention",
    "ScaledDotProductAttention",
    "SinusoidalPositionalEncoding",
    "sinusoidal_position_encoding",
    "sinusoidal_position_encoding_2d",
    "SCORE_FUNCTIONS",
    "AdditiveScore",
    "ConcatScore",
    "DotProductScore",
    "GeneralScore",
    "ScaledDotProductScore",
    "create_score",
]
