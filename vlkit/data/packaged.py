"""Packaged datasets: built once from files that ship inside packages, kept on disk, reused.

:func:`cached_dataset_dict` keeps a built ``DatasetDict`` under ``$VLKIT_CACHE`` (default
``~/.cache/vlkit``); :func:`png_cell` makes image cells; :func:`check_split_fractions` checks the
split arguments of a packaged source; :func:`emoji_cache_name` names an emoji dataset's entry.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from vlkit.cache import cache_root

__all__ = ["cached_dataset_dict", "check_split_fractions", "emoji_cache_name", "png_cell"]


def cached_dataset_dict(name: str, build: Callable[[], Any], root: str | Path | None = None) -> Any:
    """Load the ``DatasetDict`` saved as ``<root>/<name>``, or build, save and load it.

    The name must encode everything the data depends on (package versions, files, split
    arguments): a folder is never rebuilt. It is written atomically (``save_to_disk`` into
    a temporary folder beside it, then a rename), so parallel processes can build the same
    entry; the first rename wins and the others drop their copy. To rebuild, delete the folder.

    Args:
        name: folder name, e.g. ``"emoji_captions-..."``.
        build: makes the ``DatasetDict`` when it is not cached.
        root: cache folder; ``None`` uses :func:`cache_root`.

    Returns:
        The ``DatasetDict``, loaded with ``datasets.load_from_disk`` (memory-mapped).
    """
    import datasets

    root = cache_root() if root is None else Path(root)
    target = root / name
    if not (target / "dataset_dict.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            build().save_to_disk(str(scratch / "data"))
            try:
                (scratch / "data").rename(target)
            except OSError:  # another process saved it first
                if not (target / "dataset_dict.json").is_file():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return datasets.load_from_disk(str(target))


def png_cell(image: Image.Image) -> dict[str, Any]:
    """A ``datasets.Image`` cell ``{"bytes": PNG bytes, "path": None}`` holding ``image``."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def check_split_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ValueError unless both fractions are in ``[0, 1)`` and leave a training split."""
    for label, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{label} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            "val_fraction + test_fraction must be < 1 to leave a train split, "
            f"got {val_fraction} + {test_fraction}"
        )


def emoji_cache_name(prefix: str, font_path: Path, arguments: str) -> str:
    """Cache folder name of an emoji dataset: ``prefix``, the ``emoji`` and Pillow versions,
    the font file (size and modification time) and ``arguments`` (the code's cache version
    and the split arguments)."""
    import emoji
    import PIL

    stat = font_path.stat()
    return (
        f"{prefix}-{arguments}-emoji{emoji.__version__}-pillow{PIL.__version__}"
        f"-font{stat.st_size}.{int(stat.st_mtime)}"
    )
