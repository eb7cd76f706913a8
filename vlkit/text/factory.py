"""Text encoders by name, so a recipe swaps the LSTM for a Transformer or a pretrained model."""

from __future__ import annotations

from typing import Any

from torch import nn

from vlkit.config import PartConfig, Registry
from vlkit.text.embedding import WordEmbeddingEncoder
from vlkit.text.hf import HFTextEncoder
from vlkit.text.lstm import LSTMTextEncoder
from vlkit.text.transformer import TransformerTextEncoder

__all__ = ["TEXT_ENCODERS", "TextEncoderConfig", "create_text_encoder"]

#: Text encoders by name. The model gives ``vocab_size`` to the word-level encoders; a task
#: rebuilding a checkpoint gives ``pretrained=False`` and ``local_files`` to ``"hf"``.
#: ``trust_remote_code`` is never read from a configuration (a recipe or a checkpoint could then
#: make vlkit run a repository's code): ``"hf"`` always loads with ``trust_remote_code=False``.
TEXT_ENCODERS = Registry(
    "text_encoder", provided=("vocab_size", "pretrained", "local_files", "trust_remote_code")
)
TEXT_ENCODERS.register("lstm", LSTMTextEncoder)  # Antol et al. 2015
TEXT_ENCODERS.register("transformer", TransformerTextEncoder)  # Vaswani et al. 2017
TEXT_ENCODERS.register("embedding", WordEmbeddingEncoder)  # word level of Lu et al. 2016
TEXT_ENCODERS.register("hf", HFTextEncoder)  # any Hugging Face encoder (needs `transformers`)


class TextEncoderConfig(PartConfig):
    """A text encoder: its name in :data:`TEXT_ENCODERS` and every argument of the encoder.

    - ``"lstm"``: :class:`vlkit.text.LSTMTextEncoder` (word embeddings + biLSTM);
    - ``"transformer"``: :class:`vlkit.text.TransformerTextEncoder` (from scratch);
    - ``"embedding"``: :class:`vlkit.text.WordEmbeddingEncoder` (word embeddings only, the word
      level of :class:`vlkit.fusion.HierarchicalCoAttention`);
    - ``"hf"``: :class:`vlkit.text.HFTextEncoder`, a pretrained Hugging Face model, whose width is
      its own (384 for the packaged all-MiniLM-L6-v2); its token ids come from the matching
      tokenizer, which the DataModule names.

    Every encoder returns ``(features (b, l, dim), mask (b, l))`` and has a ``dim``. The
    word-level encoders get ``vocab_size`` from the model that builds them.

    Raises:
        ValueError: an unknown name, an argument the encoder does not take, or a value of the
            wrong type (the message lists what is valid).
    """

    registry = TEXT_ENCODERS
    default_name = "lstm"


def create_text_encoder(name: str, vocab_size: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a text encoder ``(ids (b, l), mask (b, l)) -> TextEncoderOutput(features (b, l, dim), mask)``:
    ``TextEncoderConfig(name, **kwargs).build(vocab_size=vocab_size)``.

    Args:
        name: a name of :data:`TEXT_ENCODERS`.
        vocab_size: number of token ids, padding (id 0) included (the word-level encoders).
        **kwargs: the encoder's other arguments (e.g. ``dim``, ``depth``).

    Raises:
        ValueError: see :class:`TextEncoderConfig`.
    """
    provided = {} if vocab_size is None else {"vocab_size": vocab_size}
    return TextEncoderConfig(name, **kwargs).build(**provided)
