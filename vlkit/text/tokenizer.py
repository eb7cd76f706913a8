"""Word-level tokenizer with a vocabulary built from the training split."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

__all__ = ["BOS_TOKEN", "EOS_TOKEN", "PAD_TOKEN", "UNK_TOKEN", "WordTokenizer"]

PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<bos>"  # begin of sequence (caption decoders)
EOS_TOKEN = "<eos>"  # end of sequence
# words, and single punctuation marks or symbols; control characters (C0 and C1) are neither
_WORD_RE = re.compile(r"\w+|[^\w\s\x00-\x1f\x7f-\x9f]", re.UNICODE)


class WordTokenizer:
    """Lower-cased word/punctuation tokenizer with a fixed vocabulary.

    Index 0 is always ``<pad>`` and index 1 ``<unk>``; words not in the vocabulary map to
    ``<unk>``. The vocabulary is a plain list of strings, so it can be saved with a model
    (JSON, or a checkpoint's hyper-parameters).

    Args:
        vocabulary: the token list, starting with ``["<pad>", "<unk>"]``.
        lowercase: lower-case text before splitting.

    Raises:
        ValueError: if the vocabulary does not start with the two special tokens or has
            duplicates.
    """

    def __init__(self, vocabulary: list[str], lowercase: bool = True) -> None:
        if list(vocabulary[:2]) != [PAD_TOKEN, UNK_TOKEN]:
            raise ValueError(
                f"vocabulary must start with {[PAD_TOKEN, UNK_TOKEN]}, got {list(vocabulary[:2])}; "
                "build one with WordTokenizer.from_corpus(texts)"
            )
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError("vocabulary has duplicate tokens")
        self.vocabulary = list(vocabulary)
        self.lowercase = lowercase
        self.index = {tok: i for i, tok in enumerate(self.vocabulary)}

    pad_id = 0
    unk_id = 1

    @classmethod
    def from_corpus(
        cls,
        texts: Iterable[str],
        min_freq: int = 1,
        max_size: int | None = None,
        lowercase: bool = True,
        specials: tuple[str, ...] = (),
    ) -> WordTokenizer:
        """Build the vocabulary from a corpus (the training split).

        Words are sorted by descending frequency, ties alphabetically, so the result is
        deterministic. Words seen fewer than ``min_freq`` times are left out (they become
        ``<unk>``); ``max_size`` caps the vocabulary, special tokens included. ``specials``
        (e.g. ``(BOS_TOKEN, EOS_TOKEN)`` for captions) follow ``<pad>`` and ``<unk>``.
        """
        if isinstance(texts, str):
            raise TypeError("texts must be an iterable of strings (e.g. a list of questions), not one string")
        reserved = 2 + len(specials)
        if max_size is not None and max_size < reserved + 1:
            raise ValueError(
                f"max_size must be >= {reserved + 1} (the special tokens and one word), got {max_size}"
            )
        if min_freq < 1:
            raise ValueError(f"min_freq must be >= 1, got {min_freq}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(cls.split(text, lowercase))
        words = sorted(
            (w for w, c in counts.items() if c >= min_freq and w not in specials),
            key=lambda w: (-counts[w], w),
        )
        if max_size is not None:
            words = words[: max_size - reserved]
        return cls([PAD_TOKEN, UNK_TOKEN, *specials, *words], lowercase=lowercase)

    @staticmethod
    def split(text: str, lowercase: bool = True) -> list[str]:
        """Split text into words and punctuation marks."""
        return _WORD_RE.findall(text.lower() if lowercase else text)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """Token ids of ``text`` (no padding), truncated to ``max_length`` if given.

        Raises:
            ValueError: if ``text`` is not a string or has no tokens (empty/whitespace), or
                ``max_length < 1``.
        """
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if not isinstance(text, str):
            # a missing (None) question is a bad value in the data, hence ValueError
            raise ValueError(f"text must be a string, got {type(text).__name__}: {text!r}")  # noqa: TRY004
        tokens = self.split(text, self.lowercase)
        if not tokens:
            raise ValueError(f"text {text!r} is empty: it has no words to encode")
        ids = [self.index.get(tok, self.unk_id) for tok in tokens]
        return ids[:max_length] if max_length is not None else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids`` joined by spaces, padding dropped."""
        return " ".join(self.vocabulary[i] for i in ids if i != self.pad_id)

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON."""
        Path(path).write_text(json.dumps({"vocabulary": self.vocabulary, "lowercase": self.lowercase}))

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        """Read a vocabulary written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        return cls(data["vocabulary"], lowercase=data.get("lowercase", True))
