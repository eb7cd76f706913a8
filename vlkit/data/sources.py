"""Packaged real datasets, built as ``datasets.DatasetDict`` with an ``Image()`` column.

They go through exactly the same DataModule code as a dataset from the Hugging Face Hub.
``datasets`` is imported inside the functions so ``import vlkit`` stays light.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vlkit.data.cluttered import build_cluttered_easy_vqa
from vlkit.data.easy_vqa import build_easy_vqa
from vlkit.data.emoji import build_emoji_captions
from vlkit.data.emoji_sentiment import build_emoji_sentiment

__all__ = ["SOURCES", "build_easy_vqa", "load_dataset_dict"]

log = logging.getLogger(__name__)


#: Data file suffixes read as one split, and the ``datasets`` builder of each.
DATA_FILE_BUILDERS = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".arrow": "arrow",
}

#: Packaged datasets by name, usable as ``dataset: <name>`` in a recipe.
SOURCES: dict[str, Callable[[], Any]] = {
    "easy_vqa": build_easy_vqa,
    "easy_vqa_cluttered": build_cluttered_easy_vqa,
    "emoji_captions": build_emoji_captions,
    "emoji_sentiment": build_emoji_sentiment,
}


def load_dataset_dict(dataset: Any, config_name: str | None = None) -> Any:
    """Resolve ``dataset`` to a ``datasets.DatasetDict``.

    Accepted, in this order: a ``DatasetDict`` (returned as is); a mapping ``{split name:
    source}`` (see below); the name of a packaged source in :data:`SOURCES`; a folder written
    by ``DatasetDict.save_to_disk``; a single data file (``.parquet``, ``.csv``, ``.json``,
    ``.jsonl``, ``.arrow``) or a folder written by ``Dataset.save_to_disk``, each read as one
    split named ``"train"``; any other local path or Hugging Face Hub id, given to
    ``datasets.load_dataset`` (Hub ids need network access).

    A mapping builds the splits from different sources, for datasets published as one Hub
    repository per split, e.g. in a recipe::

        dataset:
          train: Multimodal-Fatima/VQAv2_train
          validation: Multimodal-Fatima/VQAv2_validation

    Each source is any of the accepted forms (resolved with ``config_name``); split ``name``
    is the source's split of that name, or its only split if it has just one (so a single file
    can be any split: ``{train: train.parquet, test: test.parquet}``).

    Raises:
        FileNotFoundError: ``dataset`` is a path (starts with ``/``, ``./``, ``../`` or ``~``) that
            does not exist.
        ValueError: if the result is not a ``DatasetDict``, a data file cannot be read, or a
            mapping is empty or names a source that has neither the split nor a single split.
        RuntimeError: if ``datasets.load_dataset`` fails; the message says what was tried.
    """
    import datasets

    if isinstance(dataset, datasets.DatasetDict):
        return dataset
    if isinstance(dataset, Mapping):
        return _splits_from_sources(dataset, config_name)
    if isinstance(dataset, str) and dataset in SOURCES:
        return SOURCES[dataset]()
    path = Path(str(dataset)).expanduser()
    if str(dataset).startswith(("/", "./", "../", "~", ".\\")) and not path.exists():
        # a path, not a Hub id: say so at once instead of asking the Hub
        raise FileNotFoundError(
            f"dataset {str(dataset)!r} looks like a local path but does not exist; give a folder written "
            f"by DatasetDict.save_to_disk, a data folder or file, a Hub id, or one of {sorted(SOURCES)}"
        )
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        result = datasets.load_from_disk(str(path))
    elif path.is_dir() and (path / "state.json").is_file():  # one Dataset saved with save_to_disk
        result = datasets.DatasetDict({"train": datasets.load_from_disk(str(path))})
    elif path.is_file() and path.suffix.lower() in DATA_FILE_BUILDERS:
        # datasets.load_dataset(<file>) would look for a dataset repository of that name
        builder = DATA_FILE_BUILDERS[path.suffix.lower()]
        try:
            result = datasets.load_dataset(builder, data_files={"train": str(path)})
        except Exception as err:  # a malformed file: re-raised with the file named
            raise ValueError(f"could not read the {builder} file {str(dataset)!r}: {err}") from err
    else:
        try:
            result = datasets.load_dataset(str(dataset), config_name)
        except Exception as err:  # any loading failure: re-raised below with what was tried
            raise RuntimeError(
                f"could not load dataset {dataset!r} (config {config_name!r}) with datasets.load_dataset: "
                f"{err}. Packaged sources: {sorted(SOURCES)}; a Hub id needs network access "
                "(HF_HUB_OFFLINE must not be set)."
            ) from err
    if not isinstance(result, datasets.DatasetDict):
        # a dataset with the wrong layout is a bad value, not a programming error: ValueError
        raise ValueError(  # noqa: TRY004
            f"dataset {dataset!r} is a single {type(result).__name__}, expected a DatasetDict with named splits"
        )
    return result


def _splits_from_sources(sources: Mapping, config_name: str | None) -> Any:
    """The ``DatasetDict`` of a ``{split name: source}`` mapping (see :func:`load_dataset_dict`)."""
    import datasets

    if not sources:
        raise ValueError("dataset is an empty mapping; give {split name: source}, e.g. {train: <Hub id>}")
    splits = {}
    for name, source in sources.items():
        loaded = load_dataset_dict(source, config_name)
        if name in loaded:
            splits[str(name)] = loaded[name]
        elif len(loaded) == 1:
            splits[str(name)] = next(iter(loaded.values()))
        else:
            raise ValueError(
                f"dataset split {name!r}: the source {source!r} has splits {list(loaded)} but none named "
                f"{name!r}; name the split as in the source, or give a source with a single split"
            )
    return datasets.DatasetDict(splits)
