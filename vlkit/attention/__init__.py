"""Attention primitives: masks, score functions, alignments, pooling, hard attention,
multi-head attention, Transformer blocks, seq2seq attention layers, positions.

Conventions, the same across vlkit:

- Masks are ``torch.bool`` with True = attend.
- Every attention layer returns a NamedTuple that carries its weights: ``AttentionOutput(
  context, weights)``, ``HardAttentionOutput(context, weights, index, log_prob, entropy)``,
  ``LuongAttentionOutput(output, context, weights)``, ``DecoderStepOutput(output, state,
  context, weights)``, and for the multi-head layers ``MultiHeadAttentionOutput(output,
  weights)`` where ``weights`` is filled when ``need_weights=True`` (the fused kernel cannot
  return them) and is None otherwise.
"""

from vlkit.attention.alignment import (
    ALIGNMENTS,
    GlobalAlignment,
    LocalMonotonicAlignment,
    LocalPredictiveAlignment,
    create_alignment,
)
from vlkit.attention.hard import (
    HARD_ESTIMATORS,
    HardAttention,
    HardAttentionOutput,
    HardContext,
    HardContextOutput,
    hard_attention_loss,
)
from vlkit.attention.masking import check_mask, lengths_to_mask, masked_softmax
from vlkit.attention.multihead import MultiHeadAttention, MultiHeadAttentionOutput
from vlkit.attention.pooling import (
    AdditiveAttention,
    Attention,
    AttentionOutput,
    ConcatAttention,
    DotProductAttention,
    GeneralAttention,
    NadarayaWatsonAttention,
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
    GaussianKernelScore,
    GeneralScore,
    ScaledDotProductScore,
    create_score,
)
from vlkit.attention.seq2seq import (
    BahdanauDecoderStep,
    DecoderStepOutput,
    LuongAttention,
    LuongAttentionOutput,
)
from vlkit.attention.transformer import (
    TransformerBlock,
    TransformerDecoderBlock,
    TransformerDecoderBlockOutput,
)

__all__ = [
    "ALIGNMENTS",
    "HARD_ESTIMATORS",
    "SCORE_FUNCTIONS",
    "AdditiveAttention",
    "AdditiveScore",
    "Attention",
    "AttentionOutput",
    "BahdanauDecoderStep",
    "ConcatAttention",
    "ConcatScore",
    "DecoderStepOutput",
    "DotProductAttention",
    "DotProductScore",
    "GaussianKernelScore",
    "GeneralAttention",
    "GeneralScore",
    "GlobalAlignment",
    "HardAttention",
    "HardAttentionOutput",
    "HardContext",
    "HardContextOutput",
    "LocalMonotonicAlignment",
    "LocalPredictiveAlignment",
    "LuongAttention",
    "LuongAttentionOutput",
    "MultiHeadAttention",
    "MultiHeadAttentionOutput",
    "NadarayaWatsonAttention",
    "ScaledDotProductAttention",
    "ScaledDotProductScore",
    "SinusoidalPositionalEncoding",
    "TransformerBlock",
    "TransformerDecoderBlock",
    "TransformerDecoderBlockOutput",
    "check_mask",
    "create_alignment",
    "create_score",
    "hard_attention_loss",
    "lengths_to_mask",
    "masked_softmax",
    "sinusoidal_position_encoding",
    "sinusoidal_position_encoding_2d",
]
