"""The train / validation / test splits of a dataset, checked and ready to read."""

from __future__ import annotations

import logging
import random
from typing import Any

from vlkit.data.images import image_key
from vlkit.data.sources import load_dataset_dict

__all__ = ["hold_out_by_image", "load_splits"]

log = logging.getLogger(__name__)


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
        missing = [(role, column) for role, column in columns.items() if column not in split.column_names]
        if missing:
            named = ", ".join(f"{column!r} (set by {role})" for role, column in missing)
            roles = " and ".join(role for role, _ in missing)
            raise ValueError(
                f"split {name!r} has no column {named}; its columns are {split.column_names}. "
                f"Set {roles} in the data section of the recipe."
            )
        if image_column is not None and isinstance(split.features.get(image_column), datasets.Image):
            hf[name] = split.cast_column(image_column, datasets.Image(decode=False))
    return hf


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
                groups.setdefault(image_key(cell), []).append(row)
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
