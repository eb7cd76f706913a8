"""Cluttered easy-VQA: easy-VQA's shapes made small, placed anywhere on a larger canvas, among clutter.

The spatial transformer paper (Jaderberg et al., NeurIPS 2015, arXiv:1506.02025) showed its
mechanism on *cluttered MNIST*: a digit at a random position of a larger canvas strewn with
fragments of other digits, where the model must find the object before it can read it. easy-VQA
(one large shape on a plain background) gives localisation nothing to do; this source builds the
same kind of benchmark from easy-VQA's real images, with the same questions and answers:

- the canvas (``canvas`` pixels square) is filled with the image's own background colour;
- the shape (the pixels that differ from that colour) is cut out of its 64-pixel image, resized so
  that its longer side is a random length in ``shape_size`` pixels, and pasted at a random
  position, wholly inside the canvas;
- ``clutter`` square fragments (``fragment`` pixels, smaller than any shape) cut from the shapes of
  other images of the same split are pasted at random positions that do not overlap the shape's
  box: colour and edges everywhere, but one whole shape.

Everything is drawn from ``seed`` and the image, so the build is deterministic. The splits are
easy-VQA's (:func:`vlkit.data.easy_vqa.build_easy_vqa`: validation images held out of training),
the column ``shape_box`` gives the shape's box ``[x0, y0, x1, y1]`` in canvas pixels (for
measuring where attention and sampling grids go). Built once (about a minute) and cached under
``$VLKIT_CACHE`` like the other packaged sources.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from PIL import Image

from vlkit.data.easy_vqa import build_easy_vqa
from vlkit.data.images import load_image
from vlkit.data.packaged import cached_dataset_dict, png_cell

__all__ = ["build_cluttered_easy_vqa", "shape_box"]

_CACHE_VERSION = 2
_BACKGROUND_THRESHOLD = 60  # sum over R, G, B (0-255) of the difference from the background


def shape_box(image: Image.Image) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the box (exclusive ends) of the pixels of an RGB image that differ from
    its top-left pixel, the plain background of an easy-VQA image.

    Raises:
        ValueError: the image is plain (no pixel differs).
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.int32)
    mask = _foreground(pixels, pixels[0, 0])
    if not mask.any():
        raise ValueError("the image is plain: no shape to cut out")
    rows, columns = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def _foreground(pixels: np.ndarray, background: Any) -> np.ndarray:
    """``(H, W)`` bool: the pixels of ``(H, W, 3)`` int ``pixels`` whose colour differs from
    ``background`` (RGB) by more than :data:`_BACKGROUND_THRESHOLD`."""
    return np.abs(pixels - np.asarray(background, dtype=np.int32)).sum(-1) > _BACKGROUND_THRESHOLD


def _mask(image: Image.Image, background: Any) -> Image.Image:
    """The foreground of ``image`` against ``background`` as a paste mask (mode ``L``, 255 = keep)."""
    keep = _foreground(np.asarray(image, dtype=np.int32), background)
    return Image.fromarray((keep * 255).astype(np.uint8), mode="L")


def _overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _clutter_image(
    source: Image.Image,
    others: list[tuple[Image.Image, tuple[int, int, int, int]]],
    rng: random.Random,
    canvas: int,
    shape_size: tuple[int, int],
    clutter: int,
    fragment: int,
) -> tuple[Image.Image, list[int]]:
    """One cluttered image and the shape's box on it (see the module's docstring); ``others`` are
    the images the fragments come from, each with its :func:`shape_box`."""
    source = source.convert("RGB")
    background = source.getpixel((0, 0))
    result = Image.new("RGB", (canvas, canvas), background)
    x0, y0, x1, y1 = shape_box(source)
    piece = source.crop((x0, y0, x1, y1))
    factor = rng.randint(*shape_size) / max(piece.width, piece.height)
    width, height = max(1, round(piece.width * factor)), max(1, round(piece.height * factor))
    piece = piece.resize((width, height), Image.Resampling.BILINEAR)
    left, top = rng.randint(0, canvas - width), rng.randint(0, canvas - height)
    box = (left, top, left + width, top + height)
    # fragments of other shapes first, off the shape's box, so the shape is never covered
    for _ in range(clutter):
        other, (ox0, oy0, ox1, oy1) = others[rng.randrange(len(others))]
        fx = rng.randint(ox0, max(ox0, ox1 - fragment))
        fy = rng.randint(oy0, max(oy0, oy1 - fragment))
        part = other.crop((fx, fy, fx + fragment, fy + fragment))
        for _attempt in range(20):
            px, py = rng.randint(0, canvas - fragment), rng.randint(0, canvas - fragment)
            if not _overlaps((px, py, px + fragment, py + fragment), box):
                # the other image's background in the fragment becomes this image's background
                result.paste(part, (px, py), _mask(part, other.getpixel((0, 0))))
                break
    result.paste(piece, (left, top), _mask(piece, background))
    return result, list(box)


def _build(
    val_fraction: float, seed: int, canvas: int, shape_size: tuple[int, int], clutter: int, fragment: int
) -> Any:
    import datasets

    plain = build_easy_vqa(val_fraction, seed)
    splits = {}
    for name, split in plain.items():
        paths = split.cast_column("image", datasets.Image(decode=False))["image"]
        distinct = sorted({cell["path"] for cell in paths})
        images = {path: load_image(path) for path in distinct}
        pool = [(images[path], shape_box(images[path])) for path in distinct]  # boxes once per image
        made: dict[str, tuple[dict[str, Any], list[int]]] = {}
        for index, path in enumerate(distinct):
            rng = random.Random(f"{seed}:{name}:{index}")
            image, box = _clutter_image(images[path], pool, rng, canvas, shape_size, clutter, fragment)
            made[path] = (png_cell(image), box)
        rows = split.remove_columns(["image"]).to_dict()
        rows["image"] = [made[cell["path"]][0] for cell in paths]
        rows["shape_box"] = [made[cell["path"]][1] for cell in paths]
        features = datasets.Features(
            {
                **{k: v for k, v in split.features.items() if k != "image"},
                "image": datasets.Image(),
                "shape_box": datasets.Sequence(datasets.Value("int32"), length=4),
            }
        )
        splits[name] = datasets.Dataset.from_dict(rows, features=features)
    return datasets.DatasetDict(splits)


def build_cluttered_easy_vqa(
    val_fraction: float = 0.1,
    seed: int = 0,
    canvas: int = 128,
    shape_size: tuple[int, int] = (28, 44),
    clutter: int = 8,
    fragment: int = 10,
    cache: bool = True,
) -> Any:
    """Cluttered easy-VQA as a ``DatasetDict`` (see the module's docstring).

    Args:
        val_fraction: share of easy-VQA's training images held out for validation, in ``[0, 1)``.
        seed: draws the held-out images, the shapes' sizes and positions and the clutter.
        canvas: side of the square canvas in pixels (> 64).
        shape_size: range of the shape's longer side in pixels (``fragment < low <= high <= canvas``).
        clutter: fragments of other shapes per image (>= 0).
        fragment: side of each fragment in pixels (>= 1).
        cache: load from / save to ``$VLKIT_CACHE``; False always builds in memory.

    Returns:
        ``DatasetDict`` with splits ``train``, ``validation``, ``test`` and columns ``image``
        (``canvas``-pixel PNGs), ``question``, ``answer``, ``image_id`` and ``shape_box``.

    Raises:
        ValueError: an argument out of range.
    """
    from importlib.metadata import version

    import easy_vqa  # noqa: F401 — its version names the cache entry

    low, high = shape_size
    if canvas <= 64 or not 1 <= fragment < low <= high <= canvas or clutter < 0:
        raise ValueError(
            "need canvas > 64, 1 <= fragment < shape_size[0] <= shape_size[1] <= canvas and clutter >= 0; "
            f"got canvas={canvas}, shape_size={shape_size}, clutter={clutter}, fragment={fragment}"
        )
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    arguments = (val_fraction, seed, canvas, (low, high), clutter, fragment)

    def build() -> Any:
        return _build(*arguments)

    if not cache:
        return build()
    name = (
        f"easy_vqa_cluttered-v{_CACHE_VERSION}-val{val_fraction}-seed{seed}-canvas{canvas}-shape{low}_{high}"
        f"-clutter{clutter}x{fragment}-easyvqa{version('easy-vqa')}-numpy{np.__version__}"
    )
    return cached_dataset_dict(name, build)
