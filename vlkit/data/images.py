"""Decoding image cells (dataset bytes, paths, PIL images) as 8-bit RGB, as viewers show them."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from typing import Any

import numpy as np
from PIL import Image, ImageOps

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "image_key", "load_image"]

#: The most pixels (width × height) an image may have unless a larger limit is given: Pillow's
#: default decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``), about 89.5 megapixels.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_INTEGER_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")  # 16-bit (and 32-bit "I") grayscale
_BOMB_ADVICE = (
    "a guard against decompression bombs: shrink the image, or raise the data option max_image_pixels "
    "(null: no limit) if you trust the data"
)
_PILLOW_LIMIT_LOCK = threading.Lock()


def _open_unguarded(source: Any) -> Image.Image:
    """``Image.open`` without Pillow's own size check (the caller applies its limit): Pillow reads
    its limit from a module global, so it is lifted for this one call, under a lock."""
    with _PILLOW_LIMIT_LOCK:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            return Image.open(source)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open_image(value: Any, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Open (not decode) an image cell; refuse images of more than ``max_pixels`` pixels (None: no limit)."""
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
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings():  # Pillow warns between its limit and twice it; the check below decides
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if pillow_limit is None or (max_pixels is not None and max_pixels <= pillow_limit):
            try:
                image = Image.open(source)  # Pillow's own check (at twice its limit) is the looser one
            except Image.DecompressionBombError as err:
                raise ValueError(f"{err} ({_BOMB_ADVICE})") from err
        else:
            image = _open_unguarded(source)
    if max_pixels is not None and image.width * image.height > max_pixels:
        image.close()
        raise ValueError(
            f"image size ({image.width}x{image.height} = {image.width * image.height} pixels) exceeds "
            f"max_image_pixels = {max_pixels} ({_BOMB_ADVICE})"
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


def load_image(value: Any, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image cell (``{"bytes", "path"}`` dict, path string, or PIL image) as 8-bit RGB,
    as it is displayed.

    ``max_pixels`` (width × height) guards against decompression bombs: a larger file is refused
    before it is decoded. The default is Pillow's limit (:data:`DEFAULT_MAX_IMAGE_PIXELS`); None
    lifts it. Pillow's global ``PIL.Image.MAX_IMAGE_PIXELS`` is not changed.

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
            with non-finite values or values outside ``[0, 255]``, or one of more than
            ``max_pixels`` pixels.
        OSError: bytes or a file that cannot be decoded (corrupt, truncated, not an image), or a
            path that does not exist (``FileNotFoundError``).
    """
    if isinstance(value, Image.Image):
        image = ImageOps.exif_transpose(value)  # a copy: the caller's image is left as it is
    else:
        image = _open_image(value, max_pixels)
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
