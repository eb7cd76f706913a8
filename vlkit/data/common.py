"""What every task's DataModule shares: splits, images, bad samples, loaders.

Bad samples follow ``on_bad_sample``:

- ``"error"`` (default): a :class:`BadSampleError` naming the split, row and column.
- ``"skip"``: the sample is left out, counted and reported (a warning when the data is
  prepared, for text problems; a per-batch count logged by the task as ``<split>/skipped``
  for unreadable images, which are only found when decoded).
"""

from __future__ import annotations

import hashlib
import io
import logging
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, NamedTuple

import pytorch_lightning as pl
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision.transforms import v2

from vlkit.data.sources import load_dataset_dict
from vlkit.vision.encoder import BackboneFeatures

__all__ = [
    "BAD_SAMPLE_POLICIES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BadSampleError",
    "ImageRows",
    "ReadableSamples",
    "SkippedBatch",
    "SplitDataModule",
    "check_bad_sample_policy",
    "hold_out_by_image",
    "image_transform",
    "load_image",
    "load_splits",
    "make_loader",
    "pad_ids",
    "pad_with_mask",
    "readable_samples",
    "report_bad_rows",
    "report_unreadable_image",
    "stack_images",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BAD_SAMPLE_POLICIES = ("error", "skip")


class BadSampleError(ValueError):
    """A sample that cannot be used; the message names the split, row and column."""


def check_bad_sample_policy(on_bad_sample: str) -> None:
    """Raise ValueError unless ``on_bad_sample`` is one of :data:`BAD_SAMPLE_POLICIES`."""
    if on_bad_sample not in BAD_SAMPLE_POLICIES:
        raise ValueError(f"on_bad_sample must be one of {list(BAD_SAMPLE_POLICIES)}, got {on_bad_sample!r}")


def report_bad_rows(name: str, column: str, problem: str, rows: list[int], on_bad_sample: str) -> None:
    """Raise or warn about the rows of one split column that cannot be used.

    Args:
        name: the split, for the message.
        column: the column, for the message.
        problem: what is wrong with those rows, e.g. ``"empty or missing text"``.
        rows: the row indices (nothing happens if empty).
        on_bad_sample: ``"error"`` raises, ``"skip"`` logs a warning (the caller leaves them out).

    Raises:
        BadSampleError: ``rows`` is not empty and ``on_bad_sample="error"``; the message names
            the split, column, first rows and how to go on.
    """
    if not rows:
        return
    message = (
        f"split {name!r}, column {column!r}: {len(rows)} row(s) with {problem} at rows "
        f"{rows[:10]}{' ...' if len(rows) > 10 else ''}"
    )
    if on_bad_sample == "error":
        raise BadSampleError(f"{message}. Fix the data, or set on_bad_sample: skip")
    log.warning("%s: skipped (on_bad_sample=skip)", message)


def report_unreadable_image(name: str, row: int, column: str, error: Exception, on_bad_sample: str) -> None:
    """Raise or warn about an image that cannot be decoded (the caller leaves the sample out).

    Raises:
        BadSampleError: with ``on_bad_sample="error"``; the message names the split, row and
            column, the decoding error, and how to go on.
    """
    reason = f"{type(error).__name__}: {error}"
    if on_bad_sample == "skip":
        log.warning("skipping split %r, row %d, column %r: unreadable image (%s)", name, row, column, reason)
        return
    raise BadSampleError(
        f"split {name!r}, row {row}, column {column!r}: cannot read the image ({reason}). "
        "Fix or remove the row, or set on_bad_sample: skip"
    ) from error


_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_INTEGER_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # 16-bit (and 32-bit "I") grayscale
_BOMB_ADVICE = (
    "Pillow's decompression-bomb guard: shrink the image, or raise PIL.Image.MAX_IMAGE_PIXELS "
    "if you trust the data"
)


def _open_image(value: Any) -> Image.Image:
    """Open (not decode) an image cell; refuse images above ``PIL.Image.MAX_IMAGE_PIXELS``."""
    if isinstance(value, dict) and value.get("bytes") is not None:
        source = io.BytesIO(value["bytes"])
    elif isinstance(value, dict) and value.get("path"):
        source = value["path"]
    elif isinstance(value, str):
        source = value
    elif value is None:
        raise ValueError("the image is missing (None)")
    else:
        raise ValueError(f"no image bytes or path in cell {value!r}")
    try:
        image = Image.open(source)
    except Image.DecompressionBombError as err:  # above twice the limit
        raise ValueError(f"{err} ({_BOMB_ADVICE})") from err
    limit = Image.MAX_IMAGE_PIXELS  # Pillow itself only warns up to twice the limit
    if limit is not None and image.width * image.height > limit:
        image.close()
        raise ValueError(
            f"image size ({image.width}x{image.height} = {image.width * image.height} pixels) exceeds "
            f"PIL.Image.MAX_IMAGE_PIXELS = {limit} ({_BOMB_ADVICE})"
        )
    return image


def load_image(value: Any) -> Image.Image:
    """Open an image cell (``{"bytes", "path"}`` dict, path string, or PIL image) as 8-bit RGB,
    as it is displayed.

    - The EXIF orientation (e.g. of a phone photo) is applied, as image viewers do.
    - Transparent images (RGBA, LA, PA, or a palette / RGB / L image with a transparent colour)
      are composited onto white.
    - 16-bit grayscale (``I;16``; 32-bit ``I`` is read as 16-bit, clipped to ``[0, 65535]``) is
      scaled to 8 bits (``v >> 8``: 32768 gives 128), not clipped at 255 as ``convert("RGB")`` does.
    - Any other mode (grayscale, bilevel, palette, CMYK, ...) is converted with ``convert("RGB")``.

    A PIL image given as ``value`` is not modified.

    Raises:
        ValueError: a missing image (None, or a cell with neither bytes nor path), or one larger
            than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (Pillow's decompression-bomb guard; raise
            that limit for trusted data).
        OSError: bytes or a file that cannot be decoded (corrupt, truncated, not an image), or a
            path that does not exist (``FileNotFoundError``).
    """
    if isinstance(value, Image.Image):
        image = ImageOps.exif_transpose(value)  # a copy: the caller's image is left as it is
    else:
        image = _open_image(value)
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
    if image.mode in _INTEGER_MODES:
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return image.convert("RGB")


def image_transform(image_size: int, train: bool, augment: bool) -> v2.Compose:
    """torchvision transform: resize to ``image_size²``, optional horizontal flip, normalise.

    Only geometric augmentation is used: colour jitter would change the answer to colour
    questions.
    """
    steps: list = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    if train and augment:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


def load_splits(
    dataset: Any,
    dataset_config: str | None,
    split_names: dict[str, str],
    columns: dict[str, str],
    val_fraction: float,
    seed: int,
    max_samples: int | None,
) -> dict[str, Any]:
    """The ``train`` / ``validation`` / ``test`` splits of a dataset, checked and ready to read.

    Args:
        dataset: anything :func:`vlkit.data.load_dataset_dict` accepts.
        dataset_config: configuration name for ``datasets.load_dataset``.
        split_names: ``{"train": ..., "validation": ..., "test": ...}`` names in the dataset.
            A missing validation split is carved out of train: whole images chosen with ``seed``
            until ``val_fraction`` of the rows are held out, every row of an image (all its
            questions) on the same side, so that no validation image was seen in training (see
            :func:`hold_out_by_image`); a missing test split is left out.
        columns: ``{argument name: column}`` that every split must have, e.g.
            ``{"image_column": "image"}``; the ``image_column`` entry, if any, is set to
            undecoded (decoded later, in the loader's workers).
        val_fraction: see ``split_names``, in ``(0, 1)``.
        seed: seed of the held-out validation rows.
        max_samples: keep only the first ``max_samples`` rows of each split (smoke runs).

    Returns:
        ``{"train": Dataset, "validation": Dataset, "test"?: Dataset}``.

    Raises:
        ValueError: no training split, an empty split, or a missing column (the message lists
            the available splits or columns and the argument to set).
    """
    import datasets

    data = load_dataset_dict(dataset, dataset_config)
    if split_names["train"] not in data:
        raise ValueError(
            f"no training split {split_names['train']!r}; the dataset has splits {list(data)}. Set train_split."
        )
    hf = {"train": data[split_names["train"]]}
    if split_names["validation"] in data:
        hf["validation"] = data[split_names["validation"]]
    else:
        hf["train"], hf["validation"] = _hold_out_by_image(
            hf["train"], columns.get("image_column"), val_fraction, seed, split_names["validation"]
        )
    if split_names["test"] in data:
        hf["test"] = data[split_names["test"]]
    if max_samples is not None:
        hf = {k: v.select(range(min(len(v), max_samples))) for k, v in hf.items()}
    image_column = columns.get("image_column")
    for name, split in hf.items():
        if len(split) == 0:
            raise ValueError(f"split {name!r} is empty")
        for role, column in columns.items():
            if column not in split.column_names:
                raise ValueError(
                    f"split {name!r} has no column {column!r} (set by {role}); its columns are "
                    f"{split.column_names}. Set {role} in the data section of the recipe."
                )
        if image_column is not None and isinstance(split.features.get(image_column), datasets.Image):
            hf[name] = split.cast_column(image_column, datasets.Image(decode=False))
    return hf


def _image_key(cell: Any) -> Any:
    """What identifies the image of a cell: its path when it has no bytes, else the SHA-1 of its bytes
    (the same image stored in several rows has the same bytes)."""
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return hashlib.sha1(cell["bytes"]).hexdigest()
        return ("path", cell.get("path"))
    if isinstance(cell, bytes):
        return hashlib.sha1(cell).hexdigest()
    return ("value", cell if isinstance(cell, (str, int, float)) or cell is None else repr(cell))


def hold_out_by_image(
    split: Any, image_column: str | None, val_fraction: float, seed: int
) -> tuple[list[int], list[int], int, int]:
    """Rows of ``split`` to train on and to hold out for validation, grouped by image.

    The distinct images (by path, or by the SHA-1 of their bytes) are shuffled with ``seed`` and
    taken whole, with all their rows, until at least ``val_fraction`` of the rows are held out:
    with several questions per image no validation image is also a training image, so
    validation accuracy (and the checkpoint chosen on it) is not optimistic. Without an image
    column every row is its own group.

    Args:
        split: a ``datasets.Dataset``.
        image_column: the image column (``datasets.Image`` cells, paths or bytes), or None.
        val_fraction: fraction of the rows to hold out, in ``(0, 1)``.
        seed: seed of the choice.

    Returns:
        ``(train rows, validation rows, number of held-out images, number of images)``, rows sorted.

    Raises:
        ValueError: every row shows one image, so none can be held out.
    """
    import datasets

    groups: dict[Any, list[int]] = {}
    if image_column is None:
        groups = {row: [row] for row in range(len(split))}
    else:
        cells = split.select_columns([image_column])
        if isinstance(cells.features[image_column], datasets.Image):
            cells = cells.cast_column(image_column, datasets.Image(decode=False))
        row = 0
        for batch in cells.iter(batch_size=1000):
            for cell in batch[image_column]:
                groups.setdefault(_image_key(cell), []).append(row)
                row += 1
    if len(groups) < 2:
        raise ValueError(
            f"cannot hold out a validation split by image: the {len(split)} training rows show "
            f"{len(groups)} image(s). Give the dataset a validation split (val_split)"
        )
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    target, held, images = len(split) * val_fraction, [], 0
    for rows in order[:-1]:  # the last image always stays in training
        if len(held) >= target:
            break
        held += rows
        images += 1
    held_set = set(held)
    return [r for r in range(len(split)) if r not in held_set], sorted(held), images, len(groups)


def _hold_out_by_image(split: Any, image_column: str | None, val_fraction: float, seed: int, name: str):
    """The training and held-out validation datasets of :func:`hold_out_by_image`, logged."""
    if image_column is not None and image_column not in split.column_names:
        image_column = None  # load_splits reports the missing column next
    train, held, images, total = hold_out_by_image(split, image_column, val_fraction, seed)
    log.info(
        "no split %r: holding out %d of %d training rows for validation, %s (seed %d)",
        name,
        len(held),
        len(split),
        f"{images} of {total} images with all their rows, so that no image is in both splits"
        if image_column is not None
        else "chosen row by row (no image column)",
        seed,
    )
    return split.select(train), split.select(held)


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
        self.flip = False

    def use_feature_cache(self, cache: Any, flip: bool) -> None:
        """Serve the cached backbone features of each image (a :class:`vlkit.data.features.FeatureCache`)
        instead of the image, flipped at random when ``flip`` (training with augmentation)."""
        self.feature_cache, self.flip = cache, flip

    @abstractmethod
    def fields(self, i: int) -> tuple:
        """The prepared (text) fields of sample ``i``."""

    def __len__(self) -> int:
        return len(self.split.rows)

    def state_dict(self) -> dict[str, Any]:
        """In a loader worker: its random state, which draws the augmentation (flips). A
        :class:`~torchdata.stateful_dataloader.StatefulDataLoader` saves it with each batch, so
        a resumed run flips the same images. In the main process: nothing (the task saves that
        process's random state in the checkpoint)."""
        if torch.utils.data.get_worker_info() is None:
            return {}
        return {"torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "torch_rng" in state and torch.utils.data.get_worker_info() is not None:
            torch.set_rng_state(state["torch_rng"])

    def __getitem__(self, i: int) -> tuple | None:
        image = self.image(self.split.rows[i])
        return None if image is None else (image, *self.fields(i))

    def image(self, row: int) -> Tensor | BackboneFeatures | None:
        """The transformed image of ``row`` (or its cached backbone features), or None if
        unreadable and ``on_bad_sample="skip"``.

        Raises:
            BadSampleError: unreadable image with ``on_bad_sample="error"``.
        """
        if self.feature_cache is not None:  # unreadable images were found (and reported) when cached
            return self.feature_cache.sample(row, self.flip)
        try:
            return self.transform(load_image(self.images[row][self.image_column]))
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
      permutation (:class:`torch.utils.data.DistributedSampler`, which repeats a few samples
      to even the shares). So the samples of global batch ``t`` are the same with 1 or N
      processes (per-process batch ``batch_size``), and the order survives a restart.
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
    from torch.utils.data import DistributedSampler

    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if train:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
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


class SplitDataModule(pl.LightningDataModule, ABC):
    """Base DataModule: train / validation / test loaders over prepared splits.

    Subclasses call :meth:`init_splits` in ``__init__``, save the hyper-parameters
    ``image_size``, ``augment``, ``batch_size``, ``num_workers``, ``on_bad_sample`` and
    ``cache_features`` (see :mod:`vlkit.data.features`), fill
    ``self._hf`` and ``self._splits`` (by role) in :meth:`_prepare`, and build a split's
    dataset and collate function in :meth:`_dataset` and :meth:`_collate_fn`.
    """

    def init_splits(
        self,
        dataset: Any,
        image_column: str,
        train_split: str,
        val_split: str,
        test_split: str,
        val_fraction: float,
        on_bad_sample: str,
    ) -> None:
        """Check and keep what every subclass shares; nothing is loaded yet.

        Raises:
            ValueError: an unknown ``on_bad_sample`` or ``val_fraction`` outside ``(0, 1)``.
        """
        check_bad_sample_policy(on_bad_sample)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.dataset, self.image_column = dataset, image_column
        self.split_names = {"train": train_split, "validation": val_split, "test": test_split}
        self._prepared = False
        self._hf: dict[str, Any] = {}
        self._splits: dict[str, Any] = {}
        self._feature_caches: dict[str, Any] = {}

    @abstractmethod
    def _prepare(self) -> None:
        """Load the splits and prepare their text once (idempotent)."""

    @abstractmethod
    def _dataset(self, name: str, transform: Callable) -> Dataset:
        """The dataset of split ``name`` with the image ``transform``."""

    @abstractmethod
    def _collate_fn(self) -> Callable:
        """The (picklable) collate function of the loaders."""

    def setup(self, stage: str | None = None) -> None:
        self._prepare()
        if self.hparams.get("cache_features") and not self._feature_caches:
            trainer = getattr(self, "trainer", None)
            model = getattr(trainer.lightning_module, "model", None) if trainer is not None else None
            encoder = getattr(model, "image_encoder", None)
            if encoder is None:
                raise ValueError(
                    "cache_features needs the model's image encoder: use the DataModule with a Trainer and a "
                    "vlkit task whose model has one, or call cache_image_features(encoder) first"
                )
            self.cache_image_features(encoder, trainer.strategy.root_device)

    def cache_image_features(self, encoder: Any, device: Any = "cpu") -> None:
        """Compute (or load from disk) the frozen backbone's features of every split's images,
        which the loaders then serve instead of images (:mod:`vlkit.data.features`).

        Args:
            encoder: a :class:`vlkit.vision.ImageEncoder` whose backbone is frozen.
            device: where the backbone runs (e.g. ``"cuda"``).

        Raises:
            ValueError: the backbone is not frozen.
            BadSampleError: an unreadable image with ``on_bad_sample="error"``.
        """
        from vlkit.data.features import build_feature_cache

        self._prepare()
        hp = self.hparams
        for name, split in self._splits.items():
            self._feature_caches[name] = build_feature_cache(
                self._hf[name],
                split.rows,
                self.image_column,
                name,
                encoder,
                hp.image_size,
                flips=name == "train" and hp.augment,
                on_bad_sample=hp.on_bad_sample,
                device=device,
                batch_size=hp.batch_size,
                num_workers=hp.num_workers,
            )

    def _loader(self, name: str) -> DataLoader:
        self._prepare()
        if name not in self._splits:
            raise ValueError(f"the dataset has no {name!r} split (looked for {self.split_names[name]!r})")
        train = name == "train"
        dataset = self._dataset(name, image_transform(self.hparams.image_size, train, self.hparams.augment))
        if name in self._feature_caches:
            dataset.use_feature_cache(self._feature_caches[name], flip=train and self.hparams.augment)
        trainer = getattr(self, "trainer", None)
        loader = make_loader(
            dataset,
            self.hparams.batch_size,
            train,
            self.hparams.num_workers,
            self._collate_fn(),
            seed=self.hparams.seed,
            rank=trainer.global_rank if trainer is not None else 0,
            world_size=trainer.world_size if trainer is not None else 1,
        )
        if train and trainer is not None:  # the trainer sets it each epoch, but after a restart only later
            loader.sampler.set_epoch(trainer.current_epoch)
        return loader

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
