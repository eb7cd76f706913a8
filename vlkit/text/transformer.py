"""Transformer text encoder: token embeddings + positions + pre-norm Transformer blocks.

Shape legend: ``b`` batch, ``l`` tokens, ``d`` width, ``h`` heads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vlkit.attention.position import SinusoidalPositionalEncoding
from vlkit.attention.transformer import TransformerBlock
from vlkit.text.common import TextEncoderOutput, check_token_ids

__all__ = ["POSITION_ENCODINGS", "TransformerTextEncoder"]

#: Kinds of position information ``TransformerTextEncoder`` can add.
POSITION_ENCODINGS = ("sinusoidal", "learned")


class TransformerTextEncoder(nn.Module):
    """A Transformer encoder over word tokens (Vaswani et al., NeurIPS 2017, arXiv:1706.03762).

    ``x = dropout(E[ids] + P)``, then ``depth`` pre-norm :class:`vlkit.attention.TransformerBlock`
    s (vlkit's own :class:`vlkit.attention.MultiHeadAttention`) with the padding mask, then a
    final LayerNorm. Positions ``P`` are the fixed sinusoidal table or a learned embedding
    (Devlin et al., NAACL 2019). Padded tokens are never attended to, so they cannot change the
    features of real tokens, and their own features are set to 0.

    Args:
        vocab_size: number of token ids (> 1); id 0 is padding.
        dim: token width ``d`` (even for sinusoidal positions; divisible by ``num_heads``).
        depth: number of blocks (>= 1).
        num_heads: attention heads per block.
        mlp_ratio: MLP width as a multiple of ``dim``.
        positions: ``"sinusoidal"`` or ``"learned"``.
        max_len: longest sequence accepted (> 0).
        dropout: dropout on embeddings, after attention and in the MLPs, in ``[0, 1)``.
        attn_drop: dropout on attention weights, in ``[0, 1)``.

    Shapes:
        ``forward(token_ids: (b, l) int64, mask: (b, l) bool | None, need_weights: bool)
        -> TextEncoderOutput(features (b, l, d), mask (b, l), weights)``; ``weights`` is a
        list of ``depth`` tensors ``(b, h, l, l)`` when ``need_weights``, else None. Without a
        mask, ``token_ids != 0`` is used; any padding pattern is allowed.

    Raises:
        ValueError: bad sizes or position kind, ids outside ``[0, vocab_size)``, sequences
            longer than ``max_len``, a mask of the wrong shape.
        TypeError: non-bool mask.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 256,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        positions: str = "sinusoidal",
        max_len: int = 512,
        dropout: float = 0.1,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (padding + at least one word), got {vocab_size}")
        if positions not in POSITION_ENCODINGS:
            raise ValueError(f"unknown positions {positions!r}; valid: {list(POSITION_ENCODINGS)}")
        if depth < 1 or max_len < 1:
            raise ValueError(f"need depth >= 1 and max_len >= 1, got {depth} and {max_len}")
        self.vocab_size, self.dim, self.max_len = vocab_size, dim, max_len
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        if positions == "sinusoidal":
            self.positions = SinusoidalPositionalEncoding(dim, max_len)
        else:
            self.position_embedding = nn.Parameter(torch.zeros(max_len, dim))
            nn.init.trunc_normal_(self.position_embedding, std=0.02)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio, proj_drop=dropout, attn_drop=attn_drop)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, token_ids: Tensor, mask: Tensor | None = None, need_weights: bool = False
    ) -> TextEncoderOutput:
        mask = check_token_ids(token_ids, mask, self.vocab_size)
        length = token_ids.shape[1]
        if length > self.max_len:
            raise ValueError(
                f"sequence of {length} tokens is longer than max_len={self.max_len}; raise max_len"
            )
        x = self.embedding(token_ids)  # (b, l, d)
        if hasattr(self, "position_embedding"):
            x = x + self.position_embedding[:length]
        else:
            x = self.positions(x)
        x = self.dropout(x)
        weights = [] if need_weights else None
        for block in self.blocks:
            x, block_weights = block(x, mask=mask, need_weights=need_weights)
            if need_weights:
                weights.append(block_weights)
        features = self.norm(x) * mask[:, :, None].to(x.dtype)  # (b, l, d)
        return TextEncoderOutput(features, mask, weights)
