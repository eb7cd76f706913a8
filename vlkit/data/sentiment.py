"""Multimodal sentiment data: any Hugging Face ``DatasetDict`` with image / text / label columns.

Labels may be a ``datasets.ClassLabel`` (the classes are its names, in order), strings
(mapped to classes by name) or plain integers (their decimal strings). Bad samples follow
``on_bad_sample`` (see :mod:`vlkit.data.bad_samples`): an empty or missing text, a missing label
(None, or ClassLabel's ``-1``) and a label that is not one of the classes are each an error
naming the split, rows and column, or, with ``skip``, left out, listed in ``skipped_rows``
and reported. An unreadable image is found when its batch is built: an error, or (``skip``)
left out of the batch and counted in its ``num_skipped``. Texts are cut to ``max_text_length``
tokens; words not in the vocabulary are ``<unk>``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from vlkit.data.bad_samples import report_bad_rows
from vlkit.data.base import SplitDataModule
from vlkit.data.batching import ImageRows, SkippedBatch, pad_with_mask, readable_samples
from vlkit.data.splits import load_splits
from vlkit.text.tokenizer import WordTokenizer

__all__ = ["CLASS_WEIGHTINGS", "SentimentBatch", "SentimentDataModule", "balanced_class_weights"]

log = logging.getLogger(__name__)

#: The class weightings :class:`SentimentDataModule` can compute from the training labels.
CLASS_WEIGHTINGS = ("none", "balanced")


class SentimentBatch(NamedTuple):
    """A collated sentiment batch.

    Attributes:
        image: ``(b, 3, H, W)`` float32, ImageNet-normalised.
        text_ids: ``(b, l)`` int64 token ids, right-padded with the tokenizer's pad id.
        text_mask: ``(b, l)`` bool, True for real tokens.
        label: ``(b,)`` int64 class index in ``[0, K)``.
        num_skipped: samples of this batch skipped as unreadable (``on_bad_sample="skip"``).
    """

    image: Tensor
    text_ids: Tensor
    text_mask: Tensor
    label: Tensor
    num_skipped: int


def balanced_class_weights(counts: list[int]) -> list[float]:
    """Class weights ``w_c = N / (K · n_c)`` (King & Zeng, Political Analysis 2001; scikit-learn's
    ``"balanced"``), so every class carries the same total weight in the loss.

    Args:
        counts: training examples per class ``n_c`` (``K`` entries, ``N`` their sum).

    Returns:
        ``K`` weights; a class with no training example gets weight 1 (it contributes no
        training loss either way) and a warning is logged.

    Raises:
        ValueError: no counts, a negative count, or no example at all.
    """
    if not counts or min(counts) < 0 or sum(counts) == 0:
        raise ValueError(f"need non-negative class counts with at least one example, got {counts}")
    total, k = sum(counts), len(counts)
    absent = [c for c, n in enumerate(counts) if n == 0]
    if absent:
        log.warning("classes %s have no training example: class weight 1", absent)
    return [total / (k * n) if n else 1.0 for n in counts]


@dataclass
class _Split:
    """The prepared text and labels of one split."""

    name: str
    rows: list[int]  # row indices into the HF split
    text_ids: list[list[int]]
    label: list[int]


class _SentimentDataset(ImageRows):
    def fields(self, i: int) -> tuple:
        return self.split.text_ids[i], self.split.label[i]


class _CollateFn:
    """Picklable collate (for worker processes)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, samples: list) -> SentimentBatch | SkippedBatch:
        batch = readable_samples(samples)
        if isinstance(batch, SkippedBatch):  # every image unreadable
            return batch
        ids, labels = batch.fields
        text_ids, mask = pad_with_mask(ids, self.pad_id)  # (b, l), (b, l)
        return SentimentBatch(batch.images, text_ids, mask, torch.tensor(labels), batch.num_skipped)


@dataclass(eq=False)
class SentimentDataModule(SplitDataModule):
    """Image + text classification from a Hugging Face ``DatasetDict`` (multimodal sentiment).

    The classes, the word vocabulary (or a Hugging Face tokenizer) and the class weights are
    fixed from the training split the first time they are needed, deterministically, so
    every process of a distributed run builds the same ones, and the CLI links them into
    :class:`vlkit.tasks.SentimentTask` (so checkpoints carry them). The fields shared by every
    task's DataModule are documented in :class:`vlkit.data.base.SplitDataModule`; the defaults
    here read the packaged emoji sentiment set (:func:`vlkit.data.build_emoji_sentiment`).

    Args:
        text_column: column with the text.
        label_column: column with the label: a ``ClassLabel``, strings, or integers.
        class_names: the classes, in index order (the task's ``classes``). Default: the
            ``ClassLabel`` names, or the sorted distinct training labels (numerically if they are
            all integers). Labels that are not in the list are bad samples.
        tokenizer_name: None for a word vocabulary built from the training texts (for the LSTM /
            Transformer text encoders), or a Hugging Face tokenizer id / local path for
            :class:`vlkit.text.HFTextEncoder` (``sentence-transformers/all-MiniLM-L6-v2`` is
            the packaged copy offline; see :func:`vlkit.text.resolve_hf_model`).
        class_weighting: ``"none"``, ``"balanced"`` (:func:`balanced_class_weights` of the
            training labels) or a list of ``K`` positive weights; the task weights the
            cross-entropy with them, for imbalanced labels.
        max_text_length: texts are truncated to this many words / subwords (>= 1).

    Raises:
        ValueError: invalid arguments, a missing split or column (the message lists those
            available), an empty split, a split with no usable row, a training split with fewer
            than two classes, or class weights that do not match the classes.
        BadSampleError: a bad text or label, or an unreadable image, with ``on_bad_sample="error"``.
    """

    dataset: Any = "emoji_sentiment"
    image_size: int = 64
    augment: bool = True
    text_column: str = "text"
    label_column: str = "label"
    class_names: list[str] | None = None
    tokenizer_name: str | None = None
    class_weighting: str | list[float] = "none"
    max_text_length: int = 64

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_text_length < 1:
            raise ValueError(f"max_text_length must be >= 1, got {self.max_text_length}")
        weighting = self.class_weighting
        if isinstance(weighting, str) and weighting not in CLASS_WEIGHTINGS:
            raise ValueError(
                f"class_weighting must be one of {list(CLASS_WEIGHTINGS)} or a list of weights, got {weighting!r}"
            )
        if not isinstance(weighting, str) and not all(float(w) > 0 for w in weighting):
            raise ValueError(f"class weights must all be > 0, got {list(weighting)}")
        names = self.class_names
        if names is not None and len(set(map(str, names))) != len(names):
            raise ValueError(f"class_names must be distinct, got {names}")
        self.tokenizer: Any = None
        self._classes: list[str] = [str(c) for c in names] if names is not None else []
        self._class_weights: list[float] | None = None
        self._class_counts: list[int] = []

    @property
    def text_length_limit(self) -> int:
        return self.max_text_length

    # -- what the task needs (linked by the CLI) ---------------------------------------------
    @property
    def classes(self) -> list[str]:
        """The class names, in label-index order."""
        self._prepare()
        return self._classes

    @property
    def class_counts(self) -> list[int]:
        """Training examples per class (after bad samples were left out)."""
        self._prepare()
        return self._class_counts

    @property
    def class_weights(self) -> list[float] | None:
        """Per-class loss weights (``class_weighting``), or None for an unweighted loss."""
        self._prepare()
        return self._class_weights

    @property
    def vocabulary(self) -> list[str] | None:
        """The word vocabulary built from the training texts, or None with a HF tokenizer."""
        self._prepare()
        return self.tokenizer.vocabulary if isinstance(self.tokenizer, WordTokenizer) else None

    # -- preparation ----------------------------------------------------------------------
    def _label_names(self, name: str, split: Any) -> list[str | None]:
        """Each row's label as a class-name string (None when missing)."""
        import datasets

        feature = split.features[self.label_column]
        values = split[self.label_column]
        if isinstance(feature, datasets.ClassLabel):
            return [None if v is None or v < 0 else feature.names[v] for v in values]
        result: list[str | None] = []
        for row, value in enumerate(values):
            if value is None or (isinstance(value, str) and not value.strip()):
                result.append(None)
            elif isinstance(value, str | int) and not isinstance(value, bool):
                result.append(str(value).strip())
            else:
                raise ValueError(
                    f"split {name!r}, row {row}, column {self.label_column!r}: cannot read a class from "
                    f"{value!r}; labels must be a ClassLabel, strings or integers"
                )
        return result

    def _default_classes(self, train: Any, labels: list[str | None]) -> list[str]:
        import datasets

        feature = train.features[self.label_column]
        if isinstance(feature, datasets.ClassLabel):
            return list(feature.names)
        seen = {label for label in labels if label is not None}
        if all(label.lstrip("-").isdigit() for label in seen):
            return sorted(seen, key=int)
        return sorted(seen)

    def _usable_rows(self, name: str, texts: list, labels: list[str | None]) -> list[int]:
        """Rows with a non-empty text and a known label; the others follow ``on_bad_sample``."""
        policy, known = self.on_bad_sample, set(self._classes)
        empty, missing, unknown = [], [], []
        for row, (text, label) in enumerate(zip(texts, labels)):
            if text is not None and not isinstance(text, str):
                raise ValueError(
                    f"split {name!r}, row {row}, column {self.text_column!r}: a text must be a string, "
                    f"got {type(text).__name__} {text!r}; is text_column the right column?"
                )
            if text is None or not self._has_tokens(text):
                empty.append(row)
            elif label is None:
                missing.append(row)
            elif label not in known:
                unknown.append(row)
        report_bad_rows(name, self.text_column, "an empty or missing text", empty, policy)
        report_bad_rows(name, self.label_column, "a missing label", missing, policy)
        if unknown:
            seen = sorted({labels[r] for r in unknown})
            report_bad_rows(
                name,
                self.label_column,
                f"a label that is not a class ({seen[:5]}; the classes are {self._classes})",
                unknown,
                policy,
            )
        bad = set(empty) | set(missing) | set(unknown)
        self.skipped_rows[name] = sorted(bad)
        return [row for row in range(len(texts)) if row not in bad]

    def _has_tokens(self, text: str) -> bool:
        """Whether the text encodes to at least one token (words, or subwords of the HF tokenizer)."""
        if self.tokenizer_name is None:
            return bool(WordTokenizer.split(text))
        return bool(self.tokenizer.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prepare(self) -> None:
        if self._prepared:
            return
        hf = load_splits(
            self.dataset,
            self.dataset_config,
            self.split_names,
            {
                "image_column": self.image_column,
                "text_column": self.text_column,
                "label_column": self.label_column,
            },
            self.val_fraction,
            self.seed,
            self.max_samples,
        )
        labels = {name: self._label_names(name, split) for name, split in hf.items()}
        if not self._classes:
            self._classes = self._default_classes(hf["train"], labels["train"])
        if self.tokenizer_name is not None:
            from vlkit.text.hf import HFTokenizer

            self.tokenizer = HFTokenizer(self.tokenizer_name)
        self.skipped_rows: dict[str, list[int]] = {}
        texts = {name: list(split[self.text_column]) for name, split in hf.items()}  # read once
        rows = {name: self._usable_rows(name, texts[name], labels[name]) for name in hf}
        for name, kept in rows.items():
            if not kept:
                raise ValueError(f"split {name!r} has no usable row (every row had a bad text or label)")
        index = {c: i for i, c in enumerate(self._classes)}
        train_texts = [texts["train"][r] for r in rows["train"]]
        self._class_counts = [0] * len(self._classes)
        for r in rows["train"]:
            self._class_counts[index[labels["train"][r]]] += 1
        if sum(1 for n in self._class_counts if n) < 2:
            raise ValueError(
                f"the training split has examples of fewer than two classes ({dict(zip(self._classes, self._class_counts))}); "
                "a classifier needs at least two"
            )
        self._class_weights = self._weights()

        if self.tokenizer_name is None:
            self.tokenizer = WordTokenizer.from_corpus(train_texts, min_freq=self.min_word_freq)
        for name in hf:
            self._splits[name] = _Split(
                name,
                rows[name],
                [self.tokenizer.encode(texts[name][r], self.max_text_length) for r in rows[name]],
                [index[labels[name][r]] for r in rows[name]],
            )
        self._hf = hf
        self._prepared = True
        log.info(
            "sentiment data: %s samples, classes %s (training counts %s), %s",
            {k: len(v.rows) for k, v in self._splits.items()},
            self._classes,
            self._class_counts,
            f"{len(self.tokenizer)} words"
            if self.tokenizer_name is None
            else f"tokenizer {self.tokenizer_name}",
        )

    def _weights(self) -> list[float] | None:
        weighting = self.class_weighting
        if isinstance(weighting, str):
            return balanced_class_weights(self._class_counts) if weighting == "balanced" else None
        if len(weighting) != len(self._classes):
            raise ValueError(
                f"class_weighting has {len(weighting)} weights for {len(self._classes)} classes {self._classes}"
            )
        return [float(w) for w in weighting]

    # -- what SplitDataModule builds the loaders from ----------------------------------------
    def _dataset(self, name: str, transform) -> _SentimentDataset:
        return _SentimentDataset(
            self._hf[name], self._splits[name], self.image_column, transform, self.on_bad_sample
        )

    def _collate_fn(self) -> _CollateFn:
        return _CollateFn(self.tokenizer.pad_id)
