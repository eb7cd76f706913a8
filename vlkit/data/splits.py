"""The train / validation / test splits of a dataset, checked and ready to read."""

from __future__ import annotations

import logging
import random
from typing import Any

from vlkit.data.sources import load_dataset_dict

__all__ = ["load_splits"]

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
            A missing validation split is carved out of train (``val_fraction`` of its rows,
            chosen with ``seed``); a missing test split is left out.
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
        order = list(range(len(hf["train"])))
        random.Random(seed).shuffle(order)
        cut = int(len(order) * val_fraction)
        log.info("no split %r: holding out %d training rows for validation", split_names["validation"], cut)
        hf["validation"] = hf["train"].select(sorted(order[:cut]))
        hf["train"] = hf["train"].select(sorted(order[cut:]))
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
