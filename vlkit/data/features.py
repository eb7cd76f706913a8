"""Feature caching: a frozen image backbone's output, computed once per distinct image and kept on disk.

When the image encoder's backbone is frozen (image encoder ``freeze: true``, no CBAM / spatial
transformer), its output for an image never changes during training, so computing it every
epoch is wasted work; with ``freeze: k`` the same holds for the output of the first ``k``
stages, and the later stages train on the cached map. A DataModule with ``cache_features: true`` computes it once per distinct
image of each split (batched, on the trainer's accelerator), stores it as a memory-mapped
``.npy`` array under ``$VLKIT_CACHE/features`` (default ``~/.cache/vlkit/features``) keyed by
everything it depends on, and its loaders then yield :class:`vlkit.vision.BackboneFeatures`
instead of images; :class:`vlkit.vision.ImageEncoder` runs only its trainable part on them.

Training images are flipped at random when ``augment`` is on: the cache then also holds the
features of each flipped image, and a sample takes the flipped one when the loader's draw
(:func:`vlkit.data.batching.flip_draw`) flips it, so a seeded run flips the same samples with and
without the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from vlkit.cache import cache_root
from vlkit.data.bad_samples import BadSampleError, report_unreadable_image
from vlkit.data.images import DEFAULT_MAX_IMAGE_PIXELS, image_key, load_image
from vlkit.data.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing
from vlkit.vision.encoder_io import BackboneFeatures

__all__ = ["FeatureCache", "build_feature_cache", "encoder_fingerprint", "image_key"]

log = logging.getLogger(__name__)
_CACHE_VERSION = 1
#: Storage dtypes of a feature cache.
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}


@dataclass
class FeatureCache:
    """The cached backbone features of one split.

    Attributes:
        features: ``(v, m, ...)`` array (memory-mapped): the backbone output of each of the
            ``m`` distinct images; ``v = 2`` when flipped copies are cached (index 1), else 1.
        index: row of the split → its image's index in ``features``, ``-1`` if the image could
            not be read (``on_bad_sample: skip``).
    """

    features: Any
    index: dict[int, int]

    def sample(self, row: int, flip: bool = False) -> BackboneFeatures | None:
        """The features of ``row``'s image (of its mirror image when ``flip``), None for an
        unreadable image.

        Raises:
            ValueError: ``flip`` asked of a cache built without flipped copies.
        """
        j = self.index[row]
        if j < 0:
            return None
        if flip and self.features.shape[0] < 2:
            raise ValueError("this feature cache holds no flipped images: build it with flips=True")
        # float32 whatever the storage (a float16 cache is read back as float32)
        return BackboneFeatures(
            torch.from_numpy(np.array(self.features[1 if flip else 0, j], dtype=np.float32))
        )


def encoder_fingerprint(encoder: nn.Module) -> str:
    """SHA-1 of the backbone's configuration, the stage it is read at and every tensor of the
    state (weights and BatchNorm statistics) of what the cache holds the output of: the whole
    backbone, or with ``freeze: k`` the frozen stages (the later ones train, and are not part
    of it), so the cache is never reused for other weights or another stage (some timm feature
    extractors, e.g. EfficientNet's, keep every stage's weights whichever stage is read)."""
    digest = hashlib.sha1()
    info = getattr(encoder.backbone, "feature_info", None)  # features_only: the stages read
    stages = (info.module_name(), info.channels(), info.reduction()) if hasattr(info, "module_name") else None
    digest.update(repr((type(encoder.backbone).__name__, encoder.feature_mode, stages)).encode())
    if getattr(encoder, "backbone_precision", "32") != "32":  # bfloat16 features are other features
        digest.update(repr(encoder.backbone_precision).encode())
    prefix = getattr(encoder, "cached_prefix", None)  # freeze: k, only the frozen stages' weights
    if prefix is not None:
        digest.update(repr(("frozen stages", [name for name, _ in prefix])).encode())
    parts = [("", encoder.backbone)] if prefix is None else [(f"{name}.", module) for name, module in prefix]
    for where, module in parts:
        for name, tensor in module.state_dict().items():
            digest.update((where + name).encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _Images(Dataset):
    """The evaluation-transformed image of each distinct cell (None when unreadable)."""

    def __init__(self, cells: list, transform, max_pixels: int | None) -> None:
        self.cells, self.transform, self.max_pixels = cells, transform, max_pixels

    def __len__(self) -> int:
        return len(self.cells)

    def __getitem__(self, i: int) -> tuple[int, Tensor | None, Exception | None]:
        try:
            return i, self.transform(load_image(self.cells[i], self.max_pixels)), None
        except Exception as err:  # noqa: BLE001 — any decoding failure is reported by the caller
            return i, None, err


def _transform_key(preprocessing: Preprocessing) -> Any:
    """What of the preprocessing the features depend on: the image size, and the normalisation when
    it is not ImageNet's (the DataModules' always is; a Preprocessing may carry another), so the
    keys of the caches built with ImageNet's normalisation stay as they were."""
    if (preprocessing.mean, preprocessing.std) == (IMAGENET_MEAN, IMAGENET_STD):
        return preprocessing.image_size
    return (preprocessing.image_size, preprocessing.mean, preprocessing.std)


def _collate(items: list) -> list:
    return items


def build_feature_cache(
    hf_split: Any,
    rows: list[int],
    image_column: str,
    split_name: str,
    encoder: nn.Module,
    preprocessing: Preprocessing,
    flips: bool,
    on_bad_sample: str,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 0,
    root: str | Path | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    storage: str = "float32",
) -> FeatureCache:
    """Compute (or load) the backbone features of the distinct images of ``rows``.

    Args:
        hf_split: the ``datasets.Dataset`` (image column undecoded).
        rows: the rows of the split that are used.
        image_column: the image column.
        split_name: for messages.
        encoder: a :class:`vlkit.vision.ImageEncoder` whose backbone is frozen (``cacheable``).
        preprocessing: how images are resized and normalised (the DataModule's).
        flips: also cache each image flipped horizontally (training with ``augment``).
        on_bad_sample: ``"error"`` raises on an unreadable image, ``"skip"`` marks it ``-1``.
        device: where the backbone runs (the trainer's accelerator).
        batch_size, num_workers: of the image loader.
        root: cache folder; None uses ``$VLKIT_CACHE/features``.
        max_image_pixels: larger images are unreadable (see :func:`vlkit.data.images.load_image`).
        storage: ``"float32"`` or ``"float16"`` (half the bytes on disk and in the page cache;
            features are read back as float32; a float16 cache is kept apart from a float32 one).

    Returns:
        The :class:`FeatureCache` of the split, its array memory-mapped from disk.

    Raises:
        ValueError: the encoder's backbone is not frozen (see ``ImageEncoder.cacheable``), or an
            unknown ``storage``.
        BadSampleError: an unreadable image with ``on_bad_sample="error"``.
    """
    if storage not in STORAGE_DTYPES:
        raise ValueError(f"feature cache storage must be one of {list(STORAGE_DTYPES)}, got {storage!r}")
    if not getattr(encoder, "cacheable", False):
        raise ValueError(
            "feature caching needs a vlkit.vision.ImageEncoder whose whole backbone is frozen, or its first "
            "k stages (freeze: k, for backbones whose stages run in sequence), without CBAM or spatial "
            f"transformer inside or before it (got freeze={getattr(encoder, 'freeze', None)!r}, "
            f"cbam={getattr(encoder, 'cbam', None)!r}, stn={getattr(encoder, 'stn', None)!r}); set "
            "the image encoder's freeze and cbam / stn null or 'output', or data.cache_features: false"
        )
    cells_column = hf_split.select_columns([image_column])[image_column]
    keys, first_row, index = {}, [], {}
    for row in rows:
        key = image_key(cells_column[row])
        if key not in keys:
            keys[key] = len(first_row)
            first_row.append(row)
        index[row] = keys[key]
    identity = (
        _CACHE_VERSION,
        encoder_fingerprint(encoder),
        _transform_key(preprocessing),
        flips,
        sorted(keys),
    )
    if max_image_pixels != DEFAULT_MAX_IMAGE_PIXELS:  # it decides which images are unreadable
        identity += (max_image_pixels,)
    if storage != "float32":
        identity += (storage,)
    digest = hashlib.sha1(repr(identity).encode()).hexdigest()[:20]
    folder = Path(root) if root is not None else cache_root() / "features"
    path = folder / f"{split_name}-{digest}.npy"
    bad_path = path.with_suffix(".bad.npy")
    if path.is_file() and bad_path.is_file():
        bad = set(np.load(bad_path).tolist())
    else:
        cells = [cells_column[r] for r in first_row]
        where = (split_name, first_row, image_column, on_bad_sample)
        loader = DataLoader(
            _Images(cells, preprocessing.image_transform(), max_image_pixels),
            batch_size=batch_size,
            num_workers=num_workers,
            collate_fn=_collate,
        )
        bad = _compute(
            path, bad_path, len(cells), loader, encoder, flips, device, where, STORAGE_DTYPES[storage]
        )
    features = np.load(path, mmap_mode="r")
    for row, j in index.items():
        if j in bad:
            index[row] = -1
    return FeatureCache(features, index)


def _compute(
    path: Path,
    bad_path: Path,
    num_cells: int,
    loader: DataLoader,
    encoder: nn.Module,
    flips: bool,
    device: torch.device | str,
    where: tuple[str, list[int], str, str],
    dtype: Any = np.float32,
) -> set[int]:
    """Compute and save the features of the ``num_cells`` images of ``loader`` (of :class:`_Images`);
    return the indices of unreadable ones. ``where`` is ``(split name, row of each cell, image
    column, on_bad_sample)``."""
    split_name, first_row, image_column, on_bad_sample = where
    start = time.perf_counter()
    encoder = encoder.to(device)
    was_training = encoder.training
    encoder.eval()
    array, bad = None, set()
    # a DataLoader draws its workers' seed from the global generator: keep that stream untouched, so a
    # seeded run shuffles, flips and drops out the same with and without the cache
    with torch.random.fork_rng(devices=[]):
        try:
            for items in loader:
                good = [(i, x) for i, x, _ in items if x is not None]
                for i, x, error in items:
                    if x is None:
                        report_unreadable_image(split_name, first_row[i], image_column, error, on_bad_sample)
                        bad.add(i)
                if not good:
                    continue
                images = torch.stack([x for _, x in good]).to(device)
                variants = [images, images.flip(-1)] if flips else [images]
                outs = [encoder.backbone_features(v).feature_map.float().cpu().numpy() for v in variants]
                if array is None:
                    array = np.zeros((len(variants), num_cells, *outs[0].shape[1:]), dtype=dtype)
                for v, out in enumerate(outs):
                    array[v, [i for i, _ in good]] = out
        finally:
            encoder.train(was_training)
    if array is None:
        raise BadSampleError(f"split {split_name!r}: no image could be read, so there is nothing to cache")
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, value in ((path, array), (bad_path, np.array(sorted(bad), dtype=np.int64))):
        handle, scratch = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".npy", dir=path.parent)
        os.close(handle)
        np.save(scratch, value)
        os.replace(scratch, target)  # atomic: a parallel process sees the whole file or none
    log.info(
        "cached backbone features of %d %s images%s in %.1f s: %s, %.1f MB",
        num_cells,
        split_name,
        " (and their mirror images)" if flips else "",
        time.perf_counter() - start,
        path,
        array.nbytes / 1e6,
    )
    return bad
