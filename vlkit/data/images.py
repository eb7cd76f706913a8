"""Decoding image cells (dataset bytes, paths, PIL images) as 8-bit RGB, as viewers show them."""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps

__all__ = ["image_key", "load_image"]

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


def _float_to_8bit(image: Image.Image) -> Image.Image:
    """An ``F`` image as 8-bit ``L``: values in ``[0, 1]`` scaled by 255, in ``[0, 255]`` as they are.

    Raises:
        ValueError: NaN or infinite values, or values outside ``[0, 255]``.
    """
    values = np.asarray(image, dtype=np.float32)
    if not np.isfinite(values).all():
        raise ValueError("the float image has NaN or infinite pixel values")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 255:
        raise ValueError(f"a float image must hold values in [0, 1] or [0, 255], got [{low:.4g}, {high:.4g}]")
    scale = 255.0 if high <= 1.0 else 1.0
    return Image.fromarray(np.rint(values * scale).astype(np.uint8), mode="L")


def load_image(value: Any) -> Image.Image:
    """Open an image cell (``{"bytes", "path"}`` dict, path string, or PIL image) as 8-bit RGB,
    as it is displayed.

    - The EXIF orientation (e.g. of a phone photo) is applied, as image viewers do.
    - Transparent images (RGBA, LA, PA, or a palette / RGB / L image with a transparent colour)
      are composited onto white.
    - 16-bit grayscale (``I;16``; 32-bit ``I`` is read as 16-bit, clipped to ``[0, 65535]``) is
      scaled to 8 bits (``v >> 8``: 32768 gives 128), not clipped at 255 as ``convert("RGB")`` does.
    - 32-bit float grayscale (``F``, e.g. a float TIFF) is read as ``[0, 1]`` when its values lie
      there (scaled by 255), else as ``[0, 255]``; other ranges and NaN / infinite values are
      refused (``convert("RGB")`` would clip ``[0, 1]`` to near-black and NaN to 0).
    - Any other mode (grayscale, bilevel, palette, CMYK, ...) is converted with ``convert("RGB")``.

    A PIL image given as ``value`` is not modified.

    Raises:
        ValueError: a missing image (None, or a cell with neither bytes nor path), a float image
            with non-finite values or values outside ``[0, 255]``, or one larger
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
    if image.mode == "F":
        image = _float_to_8bit(image)
    if image.mode in _INTEGER_MODES:
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    return image.convert("RGB")


def image_key(cell: Any) -> str:
    """What identifies an image cell: the SHA-1 of its bytes when it has them (the same image stored
    in several rows has the same bytes), else its path with the file's size and modification time
    (``path|size|mtime_ns``), so that a file replaced under the same name is a new image; a path
    string is read the same way."""
    if isinstance(cell, dict):
        if cell.get("bytes") is not None:
            return hashlib.sha1(cell["bytes"]).hexdigest()
        if cell.get("path"):
            return _path_key(str(cell["path"]))
    if isinstance(cell, str):
        return _path_key(cell)
    if isinstance(cell, bytes):
        return hashlib.sha1(cell).hexdigest()
    return f"unreadable:{cell!r}"[:200]


def _path_key(path: str) -> str:
    try:
        status = os.stat(path)
    except OSError:  # missing: the path alone (reading it will fail and be reported)
        return path
    return f"{path}|{status.st_size}|{status.st_mtime_ns}"
