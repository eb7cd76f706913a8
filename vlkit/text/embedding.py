"""Word embeddings alone, for fusions that build their own phrase and sentence levels.

Shape legend: ``b`` batch, ``l`` tokens, ``d`` width.
"""

from __future__ import annotations

from torch import Tensor, nn

from vlkit.text.common import TextEncoderOutput, check_token_ids

__all__ = ["WordEmbeddingEncoder"]


class WordEmbeddingEncoder(nn.Module):
    """Token ids to word embeddings, with no context (the word level of Lu et al., NeurIPS 2016).

    :class:`vlkit.fusion.HierarchicalCoAttention` reads these as its word level and builds
    the phrase and question levels itself.

    Args:
        vocab_size: number of token ids (> 1); id 0 is padding.
        dim: embedding width ``d``.
        dropout: dropout on the embeddings, in ``[0, 1)``.

    Shapes:
        ``forward(token_ids: (b, l) int64, mask: (b, l) bool | None) -> TextEncoderOutput``
        with features ``(b, l, d)``, zero at padded positions. Without a mask,
        ``token_ids != 0`` is used.

    Raises:
        ValueError: ``vocab_size < 2``, non-2-D ids or ids outside ``[0, vocab_size)``.
        TypeError: non-bool mask.
    """

    def __init__(self, vocab_size: int, dim: int = 256, dropout: float = 0.0) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (padding + at least one word), got {vocab_size}")
        self.vocab_size, self.dim = vocab_size, dim
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)

    def forward(self, token_ids: Tensor, mask: Tensor | None = None) -> TextEncoderOutput:
        mask = check_token_ids(token_ids, mask, self.vocab_size)
        features = self.dropout(self.embedding(token_ids)) * mask[:, :, None].to(self.embedding.weight.dtype)
        return TextEncoderOutput(features, mask)
