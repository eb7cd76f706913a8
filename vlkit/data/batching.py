"""Samples and batches: the image rows of a split, collating them, and resumable loaders.

An unreadable image (``on_bad_sample="skip"``) makes its sample None; the collate functions leave
it out (:func:`readable_samples`), and a batch with no readable sample is a :class:`SkippedBatch`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

from vlkit.data.bad_samples import report_unreadable_image
from vlkit.data.images import DEFAULT_MAX_IMAGE_PIXELS, load_image
from vlkit.vision.encoder_io import BackboneFeatures

__all__ = [
    "EpochSampler",
    "ImageRows",
    "ReadableSamples",
    "SkippedBatch",
    "flip_draw",
    "make_loader",
    "pad_ids",
    "pad_with_mask",
    "readable_samples",
    "stack_images",
]


class ImageRows(Dataset, ABC):
    """Base dataset: sample ``i`` is the image of row ``split.rows[i]`` and the prepared fields.

    Images are decoded and transformed on access. Subclasses implement :meth:`fields`.

    Args:
        hf_split: the ``datasets.Dataset`` (image column undecoded).
        split: the prepared split: has ``name`` (for messages) and ``rows`` (row index of each sample).
        image_column: the image column.
        transform: image transform (see :func:`image_transform`).
        on_bad_sample: ``"error"`` or ``"skip"`` (an unreadable image gives a None sample).
    """

    def __init__(
        self, hf_split: Any, split: Any, image_column: str, transform: Callable, on_bad_sample: str
    ) -> None:
        self.images = hf_split.select_columns([image_column])
        self.split, self.split_name = split, split.name
        self.image_column, self.transform, self.on_bad_sample = image_column, transform, on_bad_sample
        self.feature_cache: Any = None
        self.flip_seed: int | None = None
        self.max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS

    def use_feature_cache(self, cache: Any) -> None:
        """Serve the cached backbone features of each image (a :class:`vlkit.data.features.FeatureCache`)
        instead of the image."""
        self.feature_cache = cache

    def limit_image_pixels(self, max_pixels: int | None) -> None:
        """Refuse (as unreadable) images of more than ``max_pixels`` pixels; None: no limit
        (see :func:`vlkit.data.images.load_image`)."""
        self.max_image_pixels = max_pixels

    def flip_at_random(self, seed: int | None) -> None:
        """Flip training images horizontally with probability 0.5, drawn from ``(seed, epoch,
        sample)`` (see :func:`flip_draw`) when the loader's sampler tags indices with the epoch
        (:class:`EpochSampler`); None: never flip."""
        self.flip_seed = seed

    @abstractmethod
    def fields(self, i: int) -> tuple:
        """The prepared (text) fields of sample ``i``."""

    def __len__(self) -> int:
        return len(self.split.rows)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple | None:
        """Sample ``key`` (an index, or ``(index, epoch)`` from an :class:`EpochSampler`)."""
        i, epoch = key if isinstance(key, tuple) else (key, None)
        flip = self.flip_seed is not None and epoch is not None and flip_draw(self.flip_seed, epoch, i)
        image = self.image(self.split.rows[i], flip)
        return None if image is None else (image, *self.fields(i))

    def image(self, row: int, flip: bool = False) -> Tensor | BackboneFeatures | None:
        """The transformed image of ``row`` (or its cached backbone features), mirrored left to
        right when ``flip``, or None if unreadable and ``on_bad_sample="skip"``.

        Raises:
            BadSampleError: unreadable image with ``on_bad_sample="error"``.
        """
        if self.feature_cache is not None:  # unreadable images were found (and reported) when cached
            return self.feature_cache.sample(row, flip)
        try:
            image = self.transform(load_image(self.images[row][self.image_column], self.max_image_pixels))
            return image.flip(-1) if flip else image
        except Exception as err:  # noqa: BLE001 — any decoding failure makes the sample unusable (reported)
            report_unreadable_image(self.split_name, row, self.image_column, err, self.on_bad_sample)
            return None


class SkippedBatch(NamedTuple):
    """What the loader gives for a batch whose every image was unreadable and skipped
    (``on_bad_sample="skip"``): the tasks count it and skip the batch."""

    num_skipped: int


class ReadableSamples(NamedTuple):
    """The readable samples of a batch, as :func:`readable_samples` gives them."""

    images: Tensor | BackboneFeatures  # (b, 3, H, W), or cached features of (b, ...)
    fields: list[tuple]  # one tuple per field after the image, over the readable samples in order
    num_skipped: int  # unreadable samples left out (reported when read)


def readable_samples(samples: list) -> ReadableSamples | SkippedBatch:
    """What the collate functions build a batch from: the readable samples (unreadable ones,
    skipped with ``on_bad_sample="skip"``, are None and were reported when read) with their images
    stacked (:func:`stack_images`) and their other fields transposed, and how many were left out;
    a :class:`SkippedBatch` if none was readable."""
    kept = [s for s in samples if s is not None]
    if not kept:
        return SkippedBatch(len(samples))
    images, *fields = zip(*kept)
    return ReadableSamples(stack_images(images), fields, len(samples) - len(kept))


def stack_images(images: list | tuple) -> Tensor | BackboneFeatures:
    """Batch the images of a sample list: ``(b, 3, H, W)``, or :class:`vlkit.vision.BackboneFeatures`
    of ``(b, ...)`` when the samples carry cached backbone features."""
    if isinstance(images[0], BackboneFeatures):
        return BackboneFeatures(torch.stack([x.feature_map for x in images]))
    return torch.stack(images)


def pad_ids(sequences: list[list[int]] | tuple, pad_id: int = 0) -> Tensor:
    """Right-pad integer sequences into a ``(b, max length)`` int64 tensor."""
    length = max(len(x) for x in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    for row, x in enumerate(sequences):
        ids[row, : len(x)] = torch.tensor(x, dtype=torch.long)
    return ids


def pad_with_mask(sequences: list[list[int]] | tuple, pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Right-pad integer sequences: ``(b, max length)`` int64 ids and the bool mask of real tokens.

    The mask comes from the lengths, not from the ids, so a tokenizer whose padding id is also a
    real token's id is handled.
    """
    ids = pad_ids(sequences, pad_id)
    lengths = torch.tensor([len(x) for x in sequences])
    return ids, torch.arange(ids.shape[1])[None, :] < lengths[:, None]


def flip_draw(seed: int, epoch: int, index: int) -> bool:
    """Whether sample ``index`` is flipped in ``epoch`` (probability 0.5), drawn from a generator
    seeded with ``(seed, epoch, index)``: the same in every worker, process and resumed run."""
    return bool(np.random.default_rng([seed, epoch, index]).random() < 0.5)


class EpochSampler(DistributedSampler):
    """:class:`torch.utils.data.DistributedSampler` that yields ``(index, epoch)``, so a sample's
    random augmentation can be drawn from the epoch and the index (:func:`flip_draw`) instead of
    a worker's random state, which a resumed run cannot restore at an epoch's start."""

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        epoch = self.epoch
        return ((index, epoch) for index in super().__iter__())


def make_loader(
    dataset: Dataset,
    batch_size: int,
    train: bool,
    num_workers: int,
    collate_fn: Callable,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> StatefulDataLoader:
    """A resumable loader over this process's share of ``dataset``.

    - Training samples are shuffled by a permutation drawn from ``seed`` and the epoch (the
      trainer calls ``sampler.set_epoch``), not from the global random state, and the
      ``world_size`` processes of a distributed run take interleaved slices of the same
      permutation (:class:`EpochSampler`, a ``DistributedSampler`` that repeats a few samples
      to even the shares and tags each index with the epoch, from which the dataset draws the
      sample's flip). So the samples of global batch ``t`` and their flips are the same with 1 or
      N processes (per-process batch ``batch_size``), and both survive a restart.
    - Evaluation samples are read in order; with several processes each reads every
      ``world_size``-th sample, none twice, so synced metrics count each sample once.
    - A ``torchdata`` :class:`~torchdata.stateful_dataloader.StatefulDataLoader`: Lightning
      saves its position in checkpoints, so a run resumed from a mid-epoch checkpoint goes on
      with the next batch instead of starting the epoch again.
    - Workers are kept alive between epochs; memory is pinned when a GPU is present. Their
      seeds come from the loader's own generator (seeded with ``seed``), so starting an epoch
      draws nothing from the global random state that dropout uses.

    Raises:
        ValueError: ``rank`` not in ``[0, world_size)``.
    """
    from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if train:
        sampler = EpochSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
    return StatefulDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        drop_last=False,
        generator=torch.Generator().manual_seed(seed),  # workers' seeds: not drawn from the global state
    )
