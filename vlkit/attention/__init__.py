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
    "SCORE_FUNCTIONS",
    "AdditiveAttention",
    "AdditiveScore",
    "Attention",
    "AttentionOutput",
    "ConcatAttention",
    "ConcatScore",
    "DotProductAttention",
    "DotProductScore",
    "GeneralAttention",
    "GeneralScore",
    "MultiHeadAttention",
    "MultiHeadAttentionOutput",
    "ScaledDotProductAttention",
    "ScaledDotProductScore",
    "SinusoidalPositionalEncoding",
    "check_mask",
    "create_score",
    "lengths_to_mask",
    "masked_softmax",
    "sinusoidal_position_encoding",
    "sinusoidal_position_encoding_2d",
]
