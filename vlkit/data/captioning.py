"""Captioning data: any Hugging Face ``DatasetDict`` with an image and one or several captions.

Training uses one sample per (image, caption) pair (``train_on="all"``, the usual COCO
practice) or only each image's first caption (``"first"``); validation and test use one
sample per image, carrying all its reference captions for BLEU / ROUGE-L / CIDEr-D (and its
first caption for the teacher-forced loss).

Bad samples follow ``on_bad_sample`` (see :mod:`vlkit.data.bad_samples`): an empty or missing
caption (None, ``""``, only spaces) and a row with no caption (None, an empty list) are an
error naming split, rows and column, or (``skip``) the caption is left out of the row's
references with a warning and a count (``skipped_captions``), and a row left with no caption
is left out (``skipped_rows``). An unreadable image is found when its batch is built: an
error, or (``skip``) left out of the batch and counted in its ``num_skipped``. Captions are
cut to ``max_caption_length`` tokens; words not in the vocabulary are ``<unk>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch import Tensor

from vlkit.data.bad_samples import BadSampleError
from vlkit.data.base import SplitDataModule
from vlkit.data.batching import ImageRows, SkippedBatch, pad_with_mask, readable_samples
from vlkit.data.splits import load_splits
from vlkit.text.caption import HFCaptionTokenizer, WordCaptionTokenizer
from vlkit.text.tokenizer import WordTokenizer

__all__ = ["CaptionBatch", "CaptionDataModule", "caption_list"]

log = logging.getLogger(__name__)
_TRAIN_ON = ("all", "first")
_CAPTION_KEYS = ("raw", "caption", "text", "sentence")


class CaptionBatch(NamedTuple):
    """A collated captioning batch.

    Attributes:
        image: ``(b, 3, H, W)`` float32, ImageNet-normalised.
        caption_ids: ``(b, T)`` int64 ``[<bos>, w_1, ..., w_m, <eos>]`` right-padded with the pad id.
        caption_mask: ``(b, T)`` bool, True for real tokens (``<bos>`` and ``<eos>`` included).
        references: ``b`` lists of reference captions (strings) of each image.
        num_skipped: samples of this batch skipped as unreadable (``on_bad_sample="skip"``).
    """

    image: Tensor
    caption_ids: Tensor
    caption_mask: Tensor
    references: list[list[str]]
    num_skipped: int


def caption_list(value: Any) -> list[Any]:
    """Normalise one row's caption cell to a list (entries may still be empty or None).

    Accepts a string, a list of strings, a list of dicts with a ``raw`` / ``caption`` /
    ``text`` / ``sentence`` key (COCO/Flickr-style ``sentences`` columns), or a dict of lists
    (how ``datasets`` returns a sequence of dicts).

    Raises:
        ValueError: for any other layout.
    """
    if value is None or isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        for key in _CAPTION_KEYS:
            if isinstance(value.get(key), list):
                return list(value[key])
    if isinstance(value, list):
        if all(v is None or isinstance(v, str) for v in value):
            return list(value)
        if all(isinstance(v, dict) for v in value):
            for key in _CAPTION_KEYS:
                if all(key in v for v in value):
                    return [v[key] for v in value]
    raise ValueError(
        f"cannot read captions from {value!r}: expected a string, a list of strings, or a list of "
        f"dicts with one of the keys {list(_CAPTION_KEYS)}"
    )


@dataclass
class _Split:
    """The prepared text side of one split: one entry per sample."""

    name: str
    rows: list[int] = field(default_factory=list)  # row indices into the HF split
    caption_ids: list[list[int]] = field(default_factory=list)
    references: list[list[str]] = field(default_factory=list)


class _CaptionDataset(ImageRows):
    def fields(self, i: int) -> tuple:
        return self.split.caption_ids[i], self.split.references[i]


class _CollateFn:
    """Picklable collate (for worker processes)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, samples: list) -> CaptionBatch | SkippedBatch:
        batch = readable_samples(samples)
        if isinstance(batch, SkippedBatch):  # every image unreadable
            return batch
        ids, references = batch.fields
        caption_ids, mask = pad_with_mask(ids, self.pad_id)
        return CaptionBatch(batch.images, caption_ids, mask, list(references), batch.num_skipped)


@dataclass(eq=False)
class CaptionDataModule(SplitDataModule):
    """Image captioning from a Hugging Face ``DatasetDict``: columns, tokenizer, transforms, loaders.

    The tokenizer is either a word vocabulary built from the training captions
    (deterministically, so every process of a distributed run builds the same one) or a
    Hugging Face tokenizer named by ``tokenizer_name``. The fields shared by every task's
    DataModule are documented in :class:`vlkit.data.base.SplitDataModule`; the defaults here read
    the packaged emoji captions (96-pixel images, no flips: captions may say "left" or "right").

    Args:
        caption_column: column with the caption(s): a string, a list of strings, or a list of
            ``{"raw": ...}`` dicts (see :func:`caption_list`).
        tokenizer_name: None (word vocabulary from the training captions) or a Hugging Face
            tokenizer id / local path (needs ``transformers``).
        max_vocab_size: cap on the word vocabulary (special tokens included), or None.
        max_caption_length: captions are cut to this many words/subwords (``<bos>``/``<eos>``
            not counted; >= 1).
        train_on: ``"all"`` (one training sample per caption) or ``"first"`` (per image).

    Raises:
        ValueError: invalid arguments, a missing split or column (the message lists those
            available), an empty split, a caption cell of an unknown layout, or a split with no
            usable row.
        BadSampleError: an empty or missing caption, a row with no caption, or an unreadable
            image, with ``on_bad_sample="error"``.
    """

    dataset: Any = "emoji_captions"
    image_size: int = 96
    caption_column: str = "captions"
    tokenizer_name: str | None = None
    max_vocab_size: int | None = None
    max_caption_length: int = 20
    train_on: str = "all"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.train_on not in _TRAIN_ON:
            raise ValueError(f"train_on must be one of {list(_TRAIN_ON)}, got {self.train_on!r}")
        if self.max_caption_length < 1:
            raise ValueError(f"max_caption_length must be >= 1, got {self.max_caption_length}")
        self.tokenizer: WordCaptionTokenizer | HFCaptionTokenizer | None = None
        self.skipped_captions: dict[str, int] = {}  # split: empty captions left out (skip), if any
        self.skipped_rows: dict[str, list[int]] = {}  # split: rows left out, having no caption (skip)

    @property
    def text_length_limit(self) -> int:
        return self.max_caption_length

    # -- what the task needs (linked into it by the CLI) ------------------------------------
    @property
    def vocabulary(self) -> list[str] | None:
        """The word vocabulary built from the training captions, or None with a HF tokenizer."""
        self._prepare()
        return self.tokenizer.vocabulary if isinstance(self.tokenizer, WordCaptionTokenizer) else None

    # -- preparation ----------------------------------------------------------------------
    def _captions(self, name: str, split: Any) -> list[tuple[int, list[str]]]:
        """``(row, non-empty captions)`` per usable row; empty captions and rows with none follow
        ``on_bad_sample``.

        Raises:
            BadSampleError: an empty or missing caption, or a row with no caption (None or an
                empty list), with ``on_bad_sample="error"``.
            ValueError: a caption cell of another layout (see :func:`caption_list`), or no usable row.
        """
        result, bad, left_out, skipped = [], [], [], 0
        for row, cell in enumerate(split[self.caption_column]):
            try:
                captions = caption_list(cell)
            except ValueError as err:
                raise ValueError(f"split {name!r}, row {row}, column {self.caption_column!r}: {err}") from err
            good = [str(c).strip() for c in captions if c is not None and self._has_tokens(str(c))]
            if not good or len(good) < len(captions):
                bad.append(row)
                skipped += len(captions) - len(good)
            if good:
                result.append((row, good))
            else:
                left_out.append(row)
        if bad:
            message = (
                f"split {name!r}, column {self.caption_column!r}: empty or missing caption(s) in rows "
                f"{bad[:10]}{' ...' if len(bad) > 10 else ''}"
            )
            if self.on_bad_sample == "error":
                raise BadSampleError(f"{message}. Fix the data, or set on_bad_sample: skip")
            log.warning(
                "%s: %d caption(s) skipped (on_bad_sample=skip); %d row(s) left with none are left out: %s",
                message,
                skipped,
                len(left_out),
                left_out[:10],
            )
        if skipped:
            self.skipped_captions[name] = skipped
        self.skipped_rows[name] = left_out
        if not result:
            raise ValueError(f"split {name!r} has no usable row (no row has a non-empty caption)")
        return result

    def _has_tokens(self, caption: str) -> bool:
        """Whether the caption encodes to at least one token (words, or subwords of the HF tokenizer)."""
        if isinstance(self.tokenizer, HFCaptionTokenizer):
            return bool(self.tokenizer.tokenizer(caption, add_special_tokens=False)["input_ids"])
        return bool(WordTokenizer.split(caption))

    def _prepare(self) -> None:
        if self._prepared:
            return
        hf = load_splits(
            self.dataset,
            self.dataset_config,
            self.split_names,
            {"image_column": self.image_column, "caption_column": self.caption_column},
            self.val_fraction,
            self.seed,
            self.max_samples,
        )
        if self.tokenizer_name is not None:
            self.tokenizer = HFCaptionTokenizer(self.tokenizer_name)
        text = {name: self._captions(name, split) for name, split in hf.items()}
        if self.tokenizer_name is None:
            train_captions = [c for _, captions in text["train"] for c in captions]
            self.tokenizer = WordCaptionTokenizer.from_corpus(
                train_captions, self.min_word_freq, self.max_vocab_size
            )
        for name, rows in text.items():
            split, truncated = _Split(name), 0
            for row, captions in rows:
                encoded = [self.tokenizer.encode(c) for c in captions]
                truncated += sum(len(ids) - 2 > self.max_caption_length for ids in encoded)
                encoded = [
                    [*ids[: self.max_caption_length + 1], self.tokenizer.eos_id]
                    if len(ids) - 2 > self.max_caption_length
                    else ids
                    for ids in encoded
                ]
                per_caption = name == "train" and self.train_on == "all"
                for ids in encoded if per_caption else encoded[:1]:
                    split.rows.append(row)
                    split.caption_ids.append(ids)
                    split.references.append(captions)
            if truncated:
                log.info("split %r: %d caption(s) cut to %d tokens", name, truncated, self.max_caption_length)
            self._splits[name] = split
        self._hf = hf
        self._prepared = True
        log.info(
            "captioning data: samples %s, %d tokens in the vocabulary",
            {k: len(v.rows) for k, v in self._splits.items()},
            len(self.tokenizer),
        )

    # -- what SplitDataModule builds the loaders from ----------------------------------------
    def _dataset(self, name: str, transform) -> _CaptionDataset:
        return _CaptionDataset(
            self._hf[name], self._splits[name], self.image_column, transform, self.on_bad_sample
        )

    def _collate_fn(self) -> _CollateFn:
        return _CollateFn(self.tokenizer.pad_id)
