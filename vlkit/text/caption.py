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

# The tokens of vlkit.metrics.caption_tokenize (coco-caption's PTB tokenisation), punctuation kept
# and ’ ‘ accepted where it has ': the stem before "n't", "n't", a clitic 's 're 've 'll 'd 'm, a
# number with inner "," or ".", a word with inner hyphens, or one other non-space character.
_APOSTROPHE = "'’‘"
_CAPTION_TOKEN = re.compile(
    rf"\w+(?=n[{_APOSTROPHE}]t\b)|n[{_APOSTROPHE}]t\b|[{_APOSTROPHE}](?:s|re|ve|ll|d|m)\b"
    r"|\d+(?:[.,]\d+)+|\w+(?:-\w+)*|[^\w\s]"
)
_CLITIC = re.compile(rf"n[{_APOSTROPHE}]t|[{_APOSTROPHE}](?:s|re|ve|ll|d|m)")
_CLOSING = frozenset(".,!?;:)")

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


class _CaptionWords(WordTokenizer):
    """:class:`WordTokenizer` with the caption metrics' tokens (see :meth:`WordCaptionTokenizer.split`)."""

    @staticmethod
    def split(text: str, lowercase: bool = True) -> list[str]:
        return WordCaptionTokenizer.split(text, lowercase)


class WordCaptionTokenizer:
    """Word-level caption tokenizer: ``[<bos>, w_1, ..., w_m, <eos>]``.

    Captions are split into the tokens the caption metrics score (:meth:`split`; coco-caption's
    PTB tokenisation, Chen et al. 2015, arXiv:1504.00325, as :func:`vlkit.metrics.caption_tokenize`
    approximates it), punctuation kept: "medium-light" and "1,000" are one word, "woman’s" is
    ``woman ’s``, "france - maine" is ``france - maine``. :meth:`decode` joins them back so that
    the metrics' tokenizer finds the same tokens in a generated caption as in a reference that
    reads the same: a caption equal to its reference word for word scores as equal. (A word-level
    split without that distinction would turn "france - maine" into "france-maine", one token the
    reference does not have.)

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
        self.words = _CaptionWords(vocabulary, lowercase=lowercase)
        self.vocabulary = self.words.vocabulary
        self.pad_id, self.bos_id, self.eos_id = 0, 2, 3

    @classmethod
    def from_corpus(
        cls, captions: Iterable[str], min_freq: int = 1, max_size: int | None = None
    ) -> WordCaptionTokenizer:
        """Vocabulary of the training captions' tokens (:meth:`split`), most frequent first (see
        ``WordTokenizer.from_corpus``)."""
        words = _CaptionWords.from_corpus(captions, min_freq, max_size, specials=(BOS_TOKEN, EOS_TOKEN))
        return cls(words.vocabulary, lowercase=words.lowercase)

    @staticmethod
    def split(text: str, lowercase: bool = True) -> list[str]:
        """The tokens of a caption: those :func:`vlkit.metrics.caption_tokenize` scores, with the
        punctuation it drops kept as tokens (``"A man's T-shirt."`` -> ``a man 's t-shirt .``)."""
        return _CAPTION_TOKEN.findall(text.lower() if lowercase else text)

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

        Tokens are joined by spaces, except that a clitic (``’s``, ``n't``) joins the word before
        it and closing punctuation follows it without a space (``woman’s hat.``), where the joined
        text still splits into the same tokens. So the caption metrics, re-tokenising the text,
        find the tokens' words: a hyphen that stood between spaces in the reference ("france -
        maine") stays between spaces, one inside a word ("medium-light") stays inside it.
        """
        chunks: list[tuple[str, list[str]]] = []  # space-separated pieces and their tokens
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            word = self.vocabulary[i]
            if chunks and (word in _CLOSING or _CLITIC.fullmatch(word)):
                text, tokens = chunks[-1]
                if self.split(text + word, self.words.lowercase) == [*tokens, word]:
                    chunks[-1] = (text + word, [*tokens, word])
                    continue
            chunks.append((word, [word]))
        return " ".join(text for text, _ in chunks)


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
