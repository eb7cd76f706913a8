"""Build a text encoder by name, so recipes can swap the LSTM for a Transformer."""

from __future__ import annotations

from torch import nn

from vlkit.text.embedding import WordEmbeddingEncoder
from vlkit.text.lstm import LSTMTextEncoder
from vlkit.text.transformer import TransformerTextEncoder

__all__ = ["TEXT_ENCODERS", "create_text_encoder"]

#: Text encoder classes by name.
TEXT_ENCODERS: dict[str, type[nn.Module]] = {
    "lstm": LSTMTextEncoder,
    "transformer": TransformerTextEncoder,
    "embedding": WordEmbeddingEncoder,
}


def create_text_encoder(
    name: str,
    vocab_size: int,
    dim: int,
    embed_dim: int = 128,
    depth: int = 2,
    num_heads: int = 4,
    positions: str = "sinusoidal",
    dropout: float = 0.0,
) -> nn.Module:
    """Build a text encoder ``(ids (b, l), mask (b, l)) -> TextEncoderOutput(features (b, l, dim), mask)``.

    Args:
        name: ``"lstm"`` (:class:`vlkit.text.LSTMTextEncoder`, bidirectional, one layer),
            ``"transformer"`` (:class:`vlkit.text.TransformerTextEncoder`) or ``"embedding"``
            (:class:`vlkit.text.WordEmbeddingEncoder`, word embeddings only, for
            :class:`vlkit.fusion.HierarchicalCoAttention`).
        vocab_size: number of token ids, padding (id 0) included.
        dim: output width.
        embed_dim: word-embedding width of the LSTM (the others embed to ``dim``).
        depth: Transformer blocks.
        num_heads: Transformer attention heads.
        positions: Transformer positions, ``"sinusoidal"`` or ``"learned"``.
        dropout: dropout in the encoder, in ``[0, 1)``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones), or bad sizes.
    """
    if name not in TEXT_ENCODERS:
        raise ValueError(f"unknown text encoder {name!r}; valid: {sorted(TEXT_ENCODERS)}")
    if name == "lstm":
        return LSTMTextEncoder(vocab_size, dim, embed_dim=embed_dim, dropout=dropout)
    if name == "embedding":
        return WordEmbeddingEncoder(vocab_size, dim, dropout=dropout)
    return TransformerTextEncoder(
        vocab_size, dim, depth=depth, num_heads=num_heads, positions=positions, dropout=dropout
    )
