"""The array helpers shared by :mod:`vlkit.viz`: weight grids, attention distributions, token
labels, images, θ and words × regions matrices as checked float64 numpy arrays, and the heat-map
colours of the Pillow overlays.

Shape legend (as in :mod:`vlkit.viz`): ``H, W`` image pixels; ``h, w`` the region grid,
``n = h · w``; ``l`` tokens. A ``(n,)`` weight vector is a row-major ``h × w`` grid.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ArrayLike = torch.Tensor | np.ndarray

# matplotlib's 'inferno' sampled at 10 evenly spaced points (0, 1/9, ..., 1): black → purple → orange
# → pale yellow. Perceptually uniform with monotonically increasing lightness, so the linear
# interpolation between anchors is monotone in brightness too.
INFERNO_ANCHORS = np.array(
    [
        (0x00, 0x00, 0x04),
        (0x1B, 0x0C, 0x41),
        (0x4A, 0x0C, 0x6B),
        (0x78, 0x1C, 0x6D),
        (0xA5, 0x2C, 0x60),
        (0xCF, 0x44, 0x46),
        (0xED, 0x69, 0x25),
        (0xFB, 0x9B, 0x06),
        (0xF7, 0xD1, 0x3D),
        (0xFC, 0xFF, 0xA4),
    ],
    dtype=np.float64,
)

WEIGHT_SUM_TOLERANCE = 1e-3  # how far from 1 the sum of an attention distribution may be
MAX_LABEL_CHARS = 18  # longer token labels are shortened with ".."


def _as_float_array(values: ArrayLike, name: str) -> np.ndarray:
    """A float64 numpy copy of a tensor (any device/dtype, detached) or array; NaN/inf rejected."""
    if isinstance(values, torch.Tensor):
        array = values.detach().to("cpu", torch.float64).numpy()
    else:
        array = np.asarray(values, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contain NaN or inf; pass finite attention weights")
    return array


def heatmap_colors(values: ArrayLike) -> np.ndarray:
    """Map values in [0, 1] to RGB colours of the 'inferno' colormap.

    The colormap is :data:`INFERNO_ANCHORS` (10 anchors of matplotlib's 'inferno') interpolated
    linearly per channel: 0 → near-black ``(0, 0, 4)``, 1 → pale yellow ``(252, 255, 164)``,
    brightness increasing monotonically in between.

    Args:
        values: ``(h, w)`` (any shape works) float array or tensor; values outside [0, 1] are
            clipped.

    Returns:
        ``(h, w, 3)`` uint8 array (the input shape plus a trailing RGB axis).

    Raises:
        ValueError: if ``values`` contain NaN or inf.
    """
    v = np.clip(_as_float_array(values, "values"), 0.0, 1.0)
    positions = np.linspace(0.0, 1.0, len(INFERNO_ANCHORS))
    rgb = np.stack([np.interp(v, positions, INFERNO_ANCHORS[:, c]) for c in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def spotlight(pixels: np.ndarray, attention: np.ndarray, dim: float) -> np.ndarray:
    """The image lit by its attention: ``pixels · (1 − dim · (1 − a))``.

    The most attended pixels (``a = 1``) keep their colours exactly; unattended ones (``a = 0``)
    are darkened to ``1 − dim`` of their brightness. Unlike a colour map laid over the image,
    this cannot hide or fake a colour of the image (a yellow shape under a yellow heat map).

    Args:
        pixels: ``(H, W, 3)`` RGB values (any scale, e.g. 0–255 or 0–1).
        attention: ``(H, W)`` attention normalised to ``[0, 1]`` (clipped).
        dim: how much unattended pixels are darkened, in ``[0, 1]``.

    Returns:
        ``(H, W, 3)`` float64 array on the scale of ``pixels``.
    """
    light = 1.0 - dim * (1.0 - np.clip(attention, 0.0, 1.0))
    return np.asarray(pixels, dtype=np.float64) * light[..., None]


def _weight_grid(weights: ArrayLike, grid_size: tuple[int, int] | None, name: str = "weights") -> np.ndarray:
    """``(n,)`` with ``grid_size`` or ``(h, w)`` weights as a float64 ``(h, w)`` grid."""
    grid = _as_float_array(weights, name)
    if grid_size is not None and (len(grid_size) != 2 or min(grid_size) < 1):
        raise ValueError(f"grid_size must be (h, w) with h, w >= 1, got {grid_size}")
    if grid.ndim == 1:
        if grid_size is None:
            raise ValueError(
                f"{name} of shape {tuple(grid.shape)} are a flat (n,) vector; pass grid_size=(h, w) "
                "with h * w = n, or pass (h, w) weights"
            )
        h, w = grid_size
        if h * w != grid.shape[0]:
            raise ValueError(
                f"grid_size {tuple(grid_size)} has {h} * {w} = {h * w} regions but {name} have "
                f"n = {grid.shape[0]}; pass grid_size with h * w = n"
            )
        grid = grid.reshape(h, w)
    elif grid.ndim == 2:
        if grid_size is not None and tuple(grid_size) != grid.shape:
            raise ValueError(
                f"{name} have shape {tuple(grid.shape)} but grid_size is {tuple(grid_size)}; "
                "drop grid_size or make them agree"
            )
    else:
        raise ValueError(f"{name} must have shape (n,) or (h, w), got {tuple(grid.shape)}")
    if grid.size == 0:
        raise ValueError(f"{name} of shape {tuple(grid.shape)} are empty; the grid needs at least one region")
    return grid


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(h, w)`` float64 grid resized bilinearly (``align_corners=False``) to ``(H, W)``."""
    return F.interpolate(
        torch.from_numpy(grid)[None, None], size=(height, width), mode="bilinear", align_corners=False
    )[0, 0].numpy()


def _image_array(image: Image.Image | ArrayLike) -> np.ndarray:
    """``(H, W, 3)`` float64 in [0, 1] of a PIL image, an ``(H, W)`` / ``(H, W, 3)`` array (uint8,
    or float in [0, 1]) or a ``(3, H, W)`` / ``(1, H, W)`` float tensor in [0, 1]."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    if isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(
                f"an image tensor must be (3, H, W) or (1, H, W) with values in [0, 1], got shape "
                f"{tuple(image.shape)}"
            )
        array = _as_float_array(image, "image").transpose(1, 2, 0)
    else:
        raw = np.asarray(image)
        array = _as_float_array(raw, "image") / (255.0 if raw.dtype == np.uint8 else 1.0)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3) or min(array.shape[:2]) < 1:
        raise ValueError(
            "image must be a PIL image, an (H, W) or (H, W, 3) array or a (3, H, W) tensor, got shape "
            f"{tuple(array.shape)}"
        )
    if array.min() < -1e-3 or array.max() > 1.0 + 1e-3:  # float rounding of a de-normalised image is fine
        raise ValueError(
            f"image values must be in [0, 1] (or uint8 in [0, 255]), got [{array.min():.3g}, "
            f"{array.max():.3g}]; undo the normalisation (x * std + mean) or pass the PIL image"
        )
    array = np.clip(array, 0.0, 1.0)
    return np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array


def _check_sums_to_one(values: np.ndarray, name: str) -> None:
    """Raise unless ``values`` are non-negative and sum to 1 (an attention distribution)."""
    if values.min() < -WEIGHT_SUM_TOLERANCE:
        raise ValueError(
            f"{name} must be non-negative attention weights (a softmax output), got a minimum of "
            f"{values.min():.4g}"
        )
    total = float(values.sum())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise ValueError(
            f"{name} must sum to 1 (an attention distribution), got {total:.4g}; pass softmax "
            "weights, or weights / weights.sum()"
        )


def _distribution(weights: ArrayLike, name: str) -> np.ndarray:
    """``weights`` as a float64 ``(m,)`` array, checked to be an attention distribution."""
    values = _as_float_array(weights, name)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"{name} must be a non-empty (m,) vector, got shape {tuple(values.shape)}")
    _check_sums_to_one(values, name)
    return values


def _token_list(tokens: Sequence[str], name: str = "tokens") -> list[str]:
    """``tokens`` as display labels (strings, long ones shortened)."""
    if isinstance(tokens, str):
        raise TypeError(f"{name} must be a list of strings (one per token), not one string")
    labels = [str(token) for token in tokens]
    return [t if len(t) <= MAX_LABEL_CHARS else t[: MAX_LABEL_CHARS - 2] + ".." for t in labels]


def _theta_matrix(theta: ArrayLike) -> np.ndarray:
    """``theta`` as a float64 ``(2, 3)`` array (a ``(1, 2, 3)`` batch of one is accepted)."""
    matrix = _as_float_array(theta, "theta")
    if matrix.shape == (1, 2, 3):
        matrix = matrix[0]
    if matrix.shape != (2, 3):
        raise ValueError(
            f"theta must be one (2, 3) affine matrix (source = θ · (x_t, y_t, 1)ᵀ), got shape "
            f"{tuple(matrix.shape)}; pass theta[i] of a (b, 2, 3) batch"
        )
    return matrix


def _check_matrix(
    matrix: ArrayLike, labels: list[str], grid_size: tuple[int, int] | None, name: str
) -> np.ndarray:
    """``matrix`` as a float64 ``(l, n)`` array whose rows match ``labels`` and columns ``grid_size``."""
    values = _as_float_array(matrix, name)
    if values.ndim != 2 or 0 in values.shape:
        raise ValueError(
            f"{name} must be a non-empty (l, n) matrix (tokens × regions), got {tuple(values.shape)}"
        )
    if values.shape[0] != len(labels):
        raise ValueError(
            f"{name} has l = {values.shape[0]} rows but there are {len(labels)} tokens; pass one token per "
            "row (the matrix is tokens × regions: transpose a regions × tokens map)"
        )
    if grid_size is not None:
        if len(grid_size) != 2 or min(grid_size) < 1:
            raise ValueError(f"grid_size must be (h, w) with h, w >= 1, got {grid_size}")
        h, w = grid_size
        if h * w != values.shape[1]:
            raise ValueError(
                f"grid_size {tuple(grid_size)} has {h} * {w} = {h * w} regions but {name} has "
                f"n = {values.shape[1]} columns; pass grid_size with h * w = n"
            )
    return values
