"""Caption tokenizers: text <-> token ids with begin/end-of-sequence tokens, for decoders.

Two kinds, one interface (``pad_id``, ``bos_id``, ``eos_id``, ``len()``, ``encode``,
``decode``):

- :class:`WordCaptionTokenizer`: the word vocabulary built from the training captions
  (:class:`vlkit.text.WordTokenizer` with ``<bos>`` and ``<eos>``); a plain list of strings,
  so it travels inside a checkpoint.
- :class:`HFCaptionTokenizer`: any Hugging Face tokenizer by Hub id or local path (e.g. the
  packaged all-MiniLM-L6-v2 WordPiece vocabulary), imported lazily (the ``hf`` extra); an
  alias of :class:`vlkit.text.hf.HFTokenizer`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from vlkit.text.hf import HFTokenizer
from vlkit.text.tokenizer import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN, WordTokenizer

_GLUED = re.compile(r"(?<=\w) ?([’'-]) ?(?=\w)")  # woman ’ s -> woman’s, medium - light -> medium-light
_CLOSING = re.compile(r" ([.,!?;:)])")

HFCaptionTokenizer = HFTokenizer  # the Hugging Face caption tokenizer lives in vlkit.text.hf

__all__ = ["CaptionTokenizer", "HFCaptionTokenizer", "WordCaptionTokenizer", "create_caption_tokenizer"]


class CaptionTokenizer(Protocol):
    """What caption data and decoding need from a tokenizer."""

    pad_id: int
    bos_id: int
    eos_id: int

    def __len__(self) -> int: ...

    def encode(self, text: str, max_length: int | None = None) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


class WordCaptionTokenizer:
    """Word-level caption tokenizer: ``[<bos>, w_1, ..., w_m, <eos>]``.

    Args:
        vocabulary: token list starting with ``<pad>, <unk>, <bos>, <eos>`` (build one with
            :meth:`from_corpus`).
        lowercase: lower-case text before splitting.

    Raises:
        ValueError: if the vocabulary does not start with the four special tokens.
    """

    specials = (PAD_TOKEN, UNK_TOKEN, BOS_TOKEN, EOS_TOKEN)

    def __init__(self, vocabulary: list[str], lowercase: bool = True) -> None:
        if tuple(vocabulary[:4]) != self.specials:
            raise ValueError(
                f"a caption vocabulary must start with {list(self.specials)}, got {list(vocabulary[:4])}; "
                "build one with WordCaptionTokenizer.from_corpus(captions)"
            )
        self.words = WordTokenizer(vocabulary, lowercase=lowercase)
        self.vocabulary = self.words.vocabulary
        self.pad_id, self.bos_id, self.eos_id = 0, 2, 3

    @classmethod
    def from_corpus(
        cls, captions: Iterable[str], min_freq: int = 1, max_size: int | None = None
    ) -> WordCaptionTokenizer:
        """Vocabulary of the training captions, most frequent first (see ``WordTokenizer.from_corpus``)."""
        words = WordTokenizer.from_corpus(captions, min_freq, max_size, specials=(BOS_TOKEN, EOS_TOKEN))
        return cls(words.vocabulary, lowercase=words.lowercase)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """``[bos] + word ids (at most max_length words) + [eos]``.

        Raises:
            ValueError: non-string or empty text, ``max_length < 1``.
        """
        return [self.bos_id, *self.words.encode(text, max_length), self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """The text up to the first ``<eos>``, special tokens dropped.

        Words are joined by spaces, except around apostrophes and hyphens (``woman’s``,
        ``medium-light``) and before closing punctuation, so that the text reads as written
        and caption metrics tokenise it like the references.
        """
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                words.append(self.vocabulary[i])
        text = _GLUED.sub(r"\1", " ".join(words))
        return _CLOSING.sub(r"\1", text)


def create_caption_tokenizer(
    vocabulary: list[str] | None = None, tokenizer_name: str | None = None, local_files: str | None = None
) -> WordCaptionTokenizer | HFCaptionTokenizer:
    """The caption tokenizer a checkpoint describes: a word ``vocabulary`` or a HF ``tokenizer_name``
    (read from the folder ``local_files`` if given, see :class:`vlkit.text.HFTokenizer`).

    Raises:
        ValueError: if neither or both are given.
    """
    if (vocabulary is None) == (tokenizer_name is None):
        raise ValueError(
            "give exactly one of vocabulary (word-level, built from the training captions) or "
            "tokenizer_name (a Hugging Face tokenizer id or path); `vlkit fit` links them from the DataModule"
        )
    return (
        WordCaptionTokenizer(vocabulary)
        if vocabulary is not None
        else HFCaptionTokenizer(tokenizer_name, local_files=local_files)
    )
