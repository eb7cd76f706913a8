"""Caption tokens as the caption metrics score them (coco-caption's PTB tokenisation, Chen et
al., "Microsoft COCO Captions: Data Collection and Evaluation Server", arXiv:1504.00325), and the
checks of a corpus of candidate captions and their references."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["Caption", "Tokens", "caption_tokenize", "tokenize_corpus"]

Caption = str | Sequence[str]
Tokens = list[str]

# Lower-case text only. One match is one token: the stem before "n't", "n't", a clitic
# 's 're 've 'll 'd 'm, a number with inner "," or ".", a word with inner hyphens, or one
# other non-space character.
_TOKEN_PATTERN = re.compile(r"\w+(?=n't\b)|n't\b|'(?:s|re|ve|ll|d|m)\b|\d+(?:[.,]\d+)+|\w+(?:-\w+)*|[^\w\s]")
_DROPPED_CHARACTERS = frozenset("'\"`(){}.?!,:;-")  # what PTBTokenizer + coco-caption's filter remove
_TYPOGRAPHIC_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def caption_tokenize(text: Caption) -> Tokens:
    """Lower-cased word tokens of a caption, punctuation dropped, as coco-caption scores them.

    Args:
        text: a caption string, or a caption already split into tokens (then only lower-cased).

    Returns:
        the tokens, e.g. ``"A man's T-shirt, drying."`` -> ``["a", "man", "'s", "t-shirt", "drying"]``.

    Raises:
        ValueError: if ``text`` is neither a string nor a sequence of strings.
    """
    return _tokens(text, "text")


def _tokens(caption: object, where: str) -> Tokens:
    if isinstance(caption, str):
        matches = _TOKEN_PATTERN.findall(caption.translate(_TYPOGRAPHIC_QUOTES).lower())
        return [token for token in matches if not set(token) <= _DROPPED_CHARACTERS]
    if isinstance(caption, Sequence) and all(isinstance(token, str) for token in caption):
        return [token.lower() for token in caption]
    raise ValueError(
        f"{where} must be a caption string or a list of token strings, got {type(caption).__name__} "
        f"{caption!r:.80}; convert it to str"
    )


def _as_list(value: object, name: str, what: str) -> list:
    if isinstance(value, str) or not isinstance(value, Sequence):
        # a wrong type in the data is a ValueError here, as in vlkit.text.tokenizer
        raise ValueError(  # noqa: TRY004
            f"{name} must be a list (or tuple) of {what}, got {type(value).__name__} {value!r:.80}; "
            f"convert it with list(...), or wrap a single caption as [caption]"
        )
    return list(value)


def tokenize_corpus(candidates: object, references: object) -> tuple[list[Tokens], list[list[Tokens]]]:
    """Validate a corpus and tokenise every caption in it."""
    candidates = _as_list(candidates, "candidates", "captions, one per image")
    references = _as_list(references, "references", "reference lists, one per image")
    if len(candidates) != len(references):
        raise ValueError(
            f"candidates and references must have one entry per image, got {len(candidates)} candidates "
            f"and {len(references)} reference lists"
        )
    if not candidates:
        raise ValueError("the corpus is empty: pass at least one candidate caption with its references")
    candidate_tokens = [_tokens(caption, f"candidates[{i}]") for i, caption in enumerate(candidates)]
    reference_tokens = []
    for i, image_references in enumerate(references):
        image_references = _as_list(image_references, f"references[{i}]", "reference captions")
        if not image_references:
            raise ValueError(
                f"references[{i}] is empty: every image needs at least one reference caption; "
                f"drop the image or add its references"
            )
        reference_tokens.append(
            [_tokens(caption, f"references[{i}][{j}]") for j, caption in enumerate(image_references)]
        )
    return candidate_tokens, reference_tokens
