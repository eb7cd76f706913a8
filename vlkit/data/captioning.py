"""Captioning data: any Hugging Face ``DatasetDict`` with an image and one or several captions.

Training uses one sample per (image, caption) pair (``train_on="all"``, the usual COCO
practice) or only each image's first caption (``"first"``); validation and test use one
sample per image, carrying all its reference captions for BLEU / ROUGE-L / CIDEr-D (and its
first caption for the teacher-forced loss).

Bad samples follow ``on_bad_sample`` (see :mod:`vlkit.data.common`): an empty or missing
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

from vlkit.data.common import (
    BadSampleError,
    ImageRows,
    SkippedBatch,
    SplitDataModule,
    load_splits,
    pad_with_mask,
    readable_samples,
)
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


class CaptionDataModule(SplitDataModule):
    """Image captioning from a Hugging Face ``DatasetDict``: columns, tokenizer, transforms, loaders.

    The tokenizer is either a word vocabulary built from the training captions
    (deterministically, so every process of a distributed run builds the same one) or a
    Hugging Face tokenizer named by ``tokenizer``.

    Args:
        dataset: a packaged source name (``"emoji_captions"``: rendered emoji captioned with
            their CLDR names), a ``save_to_disk`` folder, a local path or Hub id for
            ``datasets.load_dataset`` (e.g. a COCO/Flickr30k captioning dataset), a
            ``datasets.DatasetDict``, or a ``{split name: source}`` mapping of those, one
            source per split (see :func:`vlkit.data.load_dataset_dict`).
        dataset_config: configuration name passed to ``datasets.load_dataset``.
        image_column: column with the image (``datasets.Image``, path or bytes).
        caption_column: column with the caption(s): a string, a list of strings, or a list of
            ``{"raw": ...}`` dicts (see :func:`caption_list`).
        train_split, val_split, test_split: split names; a missing validation split is held
            out of train: whole images (chosen with ``seed``) until ``val_fraction`` of its rows,
            so no image is in both (:func:`vlkit.data.common.hold_out_by_image`).
        val_fraction: fraction held out when there is no validation split, in ``(0, 1)``.
        tokenizer: None (word vocabulary from the training captions) or a Hugging Face
            tokenizer id / local path (needs ``transformers``).
        min_word_freq: with the word vocabulary, words seen fewer times become ``<unk>``.
        max_vocab_size: cap on the word vocabulary (special tokens included), or None.
        max_caption_length: captions are cut to this many words/subwords (``<bos>``/``<eos>`` not counted).
        train_on: ``"all"`` (one training sample per caption) or ``"first"`` (per image).
        image_size: images are resized to ``image_size × image_size`` pixels.
        augment: random horizontal flips on training images (off by default: captions may
            say "left" or "right").
        batch_size: samples per batch (per process).
        num_workers: DataLoader worker processes (0 = load in the main process).
        on_bad_sample: ``"error"`` or ``"skip"``.
        cache_features: compute the frozen image backbone's features once per image (on the
            trainer's accelerator, kept on disk) and train from them instead of decoding images
            every epoch (:mod:`vlkit.data.features`); needs ``freeze_backbone: true``.
        max_samples: if set, use only the first ``max_samples`` rows of each split (smoke runs).
        seed: seed of the held-out validation split and, with the epoch, of the training order
            (see :func:`vlkit.data.common.make_loader`).

    Raises:
        ValueError: invalid arguments, a missing split or column (the message lists those
            available), an empty split, a caption cell of an unknown layout, or a split with no
            usable row.
        BadSampleError: an empty or missing caption, a row with no caption, or an unreadable
            image, with ``on_bad_sample="error"``.
    """

    def __init__(
        self,
        dataset: Any = "emoji_captions",
        dataset_config: str | None = None,
        image_column: str = "image",
        caption_column: str = "captions",
        train_split: str = "train",
        val_split: str = "validation",
        test_split: str = "test",
        val_fraction: float = 0.1,
        tokenizer: str | None = None,
        min_word_freq: int = 1,
        max_vocab_size: int | None = None,
        max_caption_length: int = 20,
        train_on: str = "all",
        image_size: int = 96,
        augment: bool = False,
        batch_size: int = 32,
        num_workers: int = 0,
        on_bad_sample: str = "error",
        cache_features: bool = False,
        max_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.init_splits(
            dataset, image_column, train_split, val_split, test_split, val_fraction, on_bad_sample
        )
        if train_on not in _TRAIN_ON:
            raise ValueError(f"train_on must be one of {list(_TRAIN_ON)}, got {train_on!r}")
        if min(batch_size, image_size, max_caption_length, min_word_freq) < 1 or num_workers < 0:
            raise ValueError(
                "batch_size, image_size, max_caption_length and min_word_freq must be >= 1 and num_workers >= 0"
            )
        self.save_hyperparameters(ignore=["dataset"] if not isinstance(dataset, str) else None)
        self.caption_column = caption_column
        self.tokenizer: WordCaptionTokenizer | HFCaptionTokenizer | None = None
        self.skipped_captions: dict[str, int] = {}  # split: empty captions left out (skip), if any
        self.skipped_rows: dict[str, list[int]] = {}  # split: rows left out, having no caption (skip)

    # -- what the task needs (linked into it by the CLI) ------------------------------------
    @property
    def vocabulary(self) -> list[str] | None:
        """The word vocabulary built from the training captions, or None with a HF tokenizer."""
        self._prepare()
        return self.tokenizer.vocabulary if isinstance(self.tokenizer, WordCaptionTokenizer) else None

    @property
    def tokenizer_name(self) -> str | None:
        """The Hugging Face tokenizer id / path, or None with the word vocabulary."""
        return self.hparams.tokenizer

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
            if self.hparams.on_bad_sample == "error":
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
        hp = self.hparams
        hf = load_splits(
            self.dataset,
            hp.dataset_config,
            self.split_names,
            {"image_column": self.image_column, "caption_column": self.caption_column},
            hp.val_fraction,
            hp.seed,
            hp.max_samples,
        )
        if hp.tokenizer is not None:
            self.tokenizer = HFCaptionTokenizer(hp.tokenizer)
        text = {name: self._captions(name, split) for name, split in hf.items()}
        if hp.tokenizer is None:
            train_captions = [c for _, captions in text["train"] for c in captions]
            self.tokenizer = WordCaptionTokenizer.from_corpus(
                train_captions, hp.min_word_freq, hp.max_vocab_size
            )
        for name, rows in text.items():
            split, truncated = _Split(name), 0
            for row, captions in rows:
                encoded = [self.tokenizer.encode(c) for c in captions]
                truncated += sum(len(ids) - 2 > hp.max_caption_length for ids in encoded)
                encoded = [
                    [*ids[: hp.max_caption_length + 1], self.tokenizer.eos_id]
                    if len(ids) - 2 > hp.max_caption_length
                    else ids
                    for ids in encoded
                ]
                per_caption = name == "train" and hp.train_on == "all"
                for ids in encoded if per_caption else encoded[:1]:
                    split.rows.append(row)
                    split.caption_ids.append(ids)
                    split.references.append(captions)
            if truncated:
                log.info("split %r: %d caption(s) cut to %d tokens", name, truncated, hp.max_caption_length)
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
            self._hf[name], self._splits[name], self.image_column, transform, self.hparams.on_bad_sample
        )

    def _collate_fn(self) -> _CollateFn:
        return _CollateFn(self.tokenizer.pad_id)
