"""Attention pictures: Pillow overlays and caption figures, and matplotlib attention figures.

Pillow (no matplotlib): :func:`heatmap_colors`, :func:`overlay_attention`,
:func:`caption_attention_figure` and :func:`save_caption_attention`, used by ``vlkit predict
--save-attention`` for image captioning (one panel per generated word).

matplotlib (the Agg backend through :class:`matplotlib.figure.Figure`; pyplot's global state is
never touched, so this is safe in scripts, tests and servers): :func:`attention_map_figure`
(region attention over the image), :func:`token_attention_figure` (per-token bars),
:func:`coattention_figure` (the co-attention affinity ``C``, tokens × regions),
:func:`stn_grid_figure` (a spatial transformer's sampling grid and output), and the per-task
composites :func:`vqa_attention_figure` and :func:`sentiment_attention_figure`, fed by
:func:`record_attention` (forward hooks that keep what a model's image encoder and fusion
returned) and written by :func:`save_figure`.

Shape legend:
    H, W   image height and width in pixels
    h, w   rows and columns of the attention grid (image regions), n = h · w
    l      number of text tokens
    T      number of generated words

Region order: a ``(n,)`` weight vector is a row-major ``h × w`` grid, i.e. region ``i`` is at
row ``i // w``, column ``i % w`` (the order of ``features.flatten(2).transpose(1, 2)`` for a
``(b, d, h, w)`` feature map).

This module is not imported by ``vlkit/__init__.py``; import it as ``vlkit.viz``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image, ImageDraw, ImageFont
from torch import nn

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

PANEL_PADDING = 4  # pixels of white around each panel and between a panel and its title
IMAGE_TITLE = "image"


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


def overlay_attention(
    image: Image.Image,
    weights: ArrayLike,
    grid_size: tuple[int, int] | None = None,
    alpha: float = 0.6,
) -> Image.Image:
    """Draw an attention map over an image as an 'inferno' heat map.

    The weights are divided by their maximum (so the most attended region is 1; negative values
    are clipped to 0), upsampled bilinearly (``align_corners=False``) to the image size, coloured
    with :func:`heatmap_colors` and blended over the image with a per-pixel opacity of
    ``alpha · a`` where ``a`` in [0, 1] is the normalised attention at that pixel::

        out = (1 - alpha · a) · image + alpha · a · heatmap_colors(a)

    So unattended pixels keep the image's colours and the most attended ones are
    ``alpha``-opaque. All-zero weights (nothing attended) return the image unchanged, as does
    ``alpha = 0``.

    Args:
        image: any-mode PIL image of size ``W × H`` (converted to RGB).
        weights: ``(n,)`` attention weights over a row-major ``h × w`` region grid (then
            ``grid_size`` is required) or ``(h, w)``; float, non-negative (e.g. a softmax
            output), any scale.
        grid_size: ``(h, w)`` with ``h · w = n`` for ``(n,)`` weights; optional for ``(h, w)``
            weights (it must then equal their shape).
        alpha: opacity of the heat map where the attention is highest, in [0, 1].

    Returns:
        RGB PIL image of the same size ``W × H`` as ``image``.

    Raises:
        ValueError: if ``weights`` are not ``(n,)`` or ``(h, w)``, ``(n,)`` weights come without
            ``grid_size`` or with ``h · w ≠ n``, ``grid_size`` disagrees with ``(h, w)`` weights,
            the weights are empty or not finite, or ``alpha`` is outside [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    grid = _weight_grid(weights, grid_size)
    rgb = image.convert("RGB")
    peak = grid.max()
    if peak <= 0 or alpha == 0:
        return rgb  # convert() always returns a new image
    grid = np.clip(grid / peak, 0.0, 1.0)  # (h, w) in [0, 1]
    width, height = rgb.size
    upsampled = np.clip(_upsample(grid, height, width), 0.0, 1.0)  # (H, W)
    colours = heatmap_colors(upsampled).astype(np.float64)  # (H, W, 3)
    opacity = (alpha * upsampled)[..., None]  # (H, W, 1)
    pixels = np.asarray(rgb, dtype=np.float64)  # (H, W, 3)
    blended = (1.0 - opacity) * pixels + opacity * colours
    return Image.fromarray(np.clip(np.rint(blended), 0, 255).astype(np.uint8), mode="RGB")


def _fit(image: Image.Image, size: int) -> Image.Image:
    """``image`` as RGB scaled (aspect ratio kept) so that its longer side is ``size`` pixels."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return rgb.resize(new_size, Image.Resampling.BICUBIC) if new_size != rgb.size else rgb.copy()


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, max_width: int) -> str:
    """``text``, shortened with a trailing '..' if it is wider than ``max_width`` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "..", font=font) > max_width:
        text = text[:-1]
    return text + ".."


def caption_attention_figure(
    image: Image.Image,
    words: list[str],
    weights: ArrayLike,
    grid_size: tuple[int, int] | None = None,
    columns: int = 5,
    panel_size: int = 128,
) -> Image.Image:
    """A grid of panels showing where a captioning model attended for each generated word.

    The first panel is the plain image titled "image"; then one panel per word with
    :func:`overlay_attention` of that word's weights (each normalised by its own maximum) and
    the word written under it. Panels are laid out row by row, ``columns`` per row, on a white
    background. The image is scaled (aspect ratio kept) so that its longer side is
    ``panel_size`` pixels; titles wider than the panel are shortened with "..".

    Every panel occupies a cell of ``panel_size + 2 · PANEL_PADDING`` pixels wide and
    ``panel_size`` plus a title strip tall; the figure is ``min(columns, T + 1)`` cells wide
    and ``ceil((T + 1) / columns)`` cells tall.

    Args:
        image: any-mode PIL image.
        words: the ``T`` generated words (strings), in order.
        weights: ``(T, n)`` attention weights over a row-major ``h × w`` region grid (then
            ``grid_size`` is required) or ``(T, h, w)``; float, non-negative; tensor or array.
        grid_size: ``(h, w)`` with ``h · w = n`` for ``(T, n)`` weights.
        columns: panels per row, at least 1.
        panel_size: the longer side of each panel's image in pixels, at least 1.

    Returns:
        RGB PIL image.

    Raises:
        TypeError: if ``words`` is a single string instead of a list of words.
        ValueError: if the number of words is not ``T``, ``weights`` are
            not ``(T, n)`` or ``(T, h, w)``, ``grid_size`` is missing or ``h · w ≠ n``,
            ``columns < 1`` or ``panel_size < 1``.
    """
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if panel_size < 1:
        raise ValueError(f"panel_size must be at least 1, got {panel_size}")
    if isinstance(words, str):
        raise TypeError("words must be a list of strings (one per generated word), not one string")
    maps = _as_float_array(weights, "weights")
    if maps.ndim not in (2, 3):
        raise ValueError(f"weights must have shape (T, n) or (T, h, w), got {tuple(maps.shape)}")
    if maps.shape[0] != len(words):
        raise ValueError(
            f"weights have T = {maps.shape[0]} rows but there are {len(words)} words; "
            "pass one row of weights per word"
        )
    grids = [_weight_grid(m, grid_size, name=f"weights[{t}]") for t, m in enumerate(maps)]

    font = ImageFont.load_default()
    thumb = _fit(image, panel_size)
    title_height = math.ceil(font.getbbox("Agjy|")[3]) + PANEL_PADDING  # tallest glyphs + padding
    cell_width = panel_size + 2 * PANEL_PADDING
    cell_height = panel_size + 2 * PANEL_PADDING + title_height

    panels = [(IMAGE_TITLE, thumb.copy())] + [
        (word, overlay_attention(thumb, grid)) for word, grid in zip(words, grids)
    ]
    num_columns = min(columns, len(panels))
    num_rows = math.ceil(len(panels) / columns)
    figure = Image.new("RGB", (num_columns * cell_width, num_rows * cell_height), "white")
    draw = ImageDraw.Draw(figure)
    for index, (title, panel) in enumerate(panels):
        x0 = (index % columns) * cell_width
        y0 = (index // columns) * cell_height
        # centre the (possibly non-square) panel in its panel_size × panel_size box
        figure.paste(
            panel,
            (
                x0 + PANEL_PADDING + (panel_size - panel.width) // 2,
                y0 + PANEL_PADDING + (panel_size - panel.height) // 2,
            ),
        )
        text = _fit_text(draw, str(title), font, panel_size)
        text_x = x0 + PANEL_PADDING + (panel_size - draw.textlength(text, font=font)) / 2
        draw.text((text_x, y0 + 2 * PANEL_PADDING + panel_size), text, fill="black", font=font)
    return figure


def save_caption_attention(
    path: str | Path,
    image: Image.Image,
    words: list[str],
    weights: ArrayLike,
    grid_size: tuple[int, int] | None = None,
    *,
    columns: int = 5,
    panel_size: int = 128,
) -> Path:
    """Write :func:`caption_attention_figure` as a PNG, creating missing parent folders.

    Args:
        path: where to write the PNG (written as PNG whatever the suffix).
        image, words, weights, grid_size, columns, panel_size: as in
            :func:`caption_attention_figure`.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError, ValueError: as :func:`caption_attention_figure`.
    """
    figure = caption_attention_figure(
        image, words, weights, grid_size=grid_size, columns=columns, panel_size=panel_size
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.save(path, format="PNG")
    return path


# ---------------------------------------------------------------------------------------------
# matplotlib figures

FIGURE_DPI = 100  # pixels per inch of every figure, and of save_figure unless told otherwise
WEIGHT_SUM_TOLERANCE = 1e-3  # how far from 1 the sum of an attention distribution may be
ATTENTION_CMAP = "inferno"  # region attention and non-negative matrices (as heatmap_colors)
AFFINITY_CMAP = "RdBu_r"  # signed matrices: the affinity C = tanh(·) in [-1, 1], white at 0
BAR_COLOR = "#ED6925"  # inferno's orange
GRID_COLOR = "#00E5FF"  # the STN sampling grid: cyan stands out on most images
FRAME_COLOR = "#FF1744"  # the STN grid's outer frame (where the output's corners read from)
MAX_LABEL_CHARS = 18  # longer token labels are shortened with ".."

#: The words × regions maps a fusion may return in ``FusionOutput.maps``, in the order
#: :meth:`AttentionRecorder.maps` looks for them, with their figure titles.
MATRIX_TITLES = {
    "affinity": "co-attention affinity C = tanh(Qᵀ W_b V)",
    "text_to_image": "cross-modal attention: each word over the regions",
    "image_to_text": "cross-modal attention: each region over the words",
}


def _new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of ``width × height`` inches drawn by Agg (no pyplot)."""
    figure = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # becomes figure.canvas: draw() and savefig() render with Agg
    return figure


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


def _bars_height(count: int) -> float:
    """Inches of figure height for ``count`` rows of token labels."""
    return max(2.0, 0.28 * count + 1.2)


def _draw_attention_map(ax: Axes, rgb: np.ndarray, grid: np.ndarray, alpha: float) -> None:
    """The image, the ``(h, w)`` weights upsampled bilinearly over it (``alpha``) and a colorbar."""
    height, width = rgb.shape[:2]
    heat = _upsample(grid, height, width)  # (H, W), within [grid.min(), grid.max()]
    peak = max(float(heat.max()), 1e-12)
    opacity = alpha * np.clip(heat / peak, 0.0, 1.0)  # (H, W): unattended pixels keep the image
    ax.imshow(rgb, interpolation="nearest")
    overlay = ax.imshow(
        heat, cmap=ATTENTION_CMAP, alpha=opacity, vmin=0.0, vmax=peak, interpolation="nearest"
    )
    ax.figure.colorbar(overlay, ax=ax, label="attention weight", shrink=0.85)
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_token_bars(ax: Axes, labels: list[str], values: np.ndarray) -> None:
    """One horizontal bar per token, first token on top, its weight written beside it."""
    positions = np.arange(len(labels))
    bars = ax.barh(positions, values, color=BAR_COLOR)
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=8)
    ax.set_yticks(positions, labels=labels)
    ax.invert_yaxis()  # read top-down, as the text
    ax.set_xlim(0.0, max(values.max(), 1e-12) * 1.25)
    ax.set_xlabel("attention weight")
    ax.spines[["top", "right"]].set_visible(False)


def _draw_matrix(
    ax: Axes,
    matrix: np.ndarray,
    labels: list[str],
    grid_size: tuple[int, int] | None,
    signed: bool,
    label: str,
) -> None:
    """A tokens × regions matrix with token labels; ``signed``: diverging colours, white at 0."""
    if signed:
        limit = max(float(np.abs(matrix).max()), 1e-12)
        cmap, vmin, vmax = AFFINITY_CMAP, -limit, limit
    else:
        cmap, vmin, vmax = ATTENTION_CMAP, 0.0, max(float(matrix.max()), 1e-12)
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.figure.colorbar(image, ax=ax, label=label)
    ax.set_yticks(np.arange(len(labels)), labels=labels)
    n = matrix.shape[1]
    if grid_size is None:
        ax.set_xlabel("image region")
        return
    h, w = grid_size
    for boundary in np.arange(w, n, w) - 0.5:  # one block of columns per row of the region grid
        ax.axvline(boundary, color="0.5", linewidth=1.5)
    ax.set_xticks(np.arange(0, n, w))
    ax.set_xlabel(f"image region i (row i // {w}, column i % {w} of the {h} × {w} grid)")


def _stn_lines(theta: np.ndarray, grid_lines: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sampling grid in normalised source coordinates: the frame ``(5, 2)`` (the output's
    corners (-1, -1), (1, -1), (1, 1), (-1, 1) and back, mapped by θ) and the inner lines, each
    ``(2, 2)`` (its two ends; an affine map keeps lines straight)."""

    def source(points: np.ndarray) -> np.ndarray:  # (m, 2) target (x_t, y_t) -> (m, 2) (x_s, y_s)
        return np.c_[points, np.ones(len(points))] @ theta.T

    frame = source(np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]]))
    inner = np.linspace(-1.0, 1.0, grid_lines)[1:-1]
    lines = [source(np.array([[-1.0, t], [1.0, t]])) for t in inner]  # rows of the output
    lines += [source(np.array([[t, -1.0], [t, 1.0]])) for t in inner]  # columns
    return frame, lines


def _stn_output(rgb: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` in [0, 1]: the image resampled as the STN does (``affine_grid`` +
    bilinear ``grid_sample``, ``align_corners=False``, zeros outside)."""
    pixels = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    grid = F.affine_grid(
        torch.from_numpy(theta)[None], list(pixels.shape), align_corners=False
    )  # (1, H, W, 2)
    out = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[0].permute(1, 2, 0).clamp(0.0, 1.0).numpy()


def _draw_stn(grid_ax: Axes, out_ax: Axes, rgb: np.ndarray, theta: np.ndarray, grid_lines: int) -> None:
    """The image with θ's sampling grid (axes in normalised coordinates) and the STN's output."""
    extent = (-1.0, 1.0, 1.0, -1.0)  # align_corners=False: ±1 are the outer edges of the edge pixels
    aspect = rgb.shape[0] / rgb.shape[1]  # one x unit is W/2 pixels, one y unit H/2
    frame, lines = _stn_lines(theta, grid_lines)
    grid_ax.imshow(rgb, extent=extent, interpolation="nearest")
    bounds = Rectangle((-1.0, -1.0), 2.0, 2.0, fill=False, edgecolor="0.4", linewidth=0.8, linestyle="--")
    grid_ax.add_patch(bounds)  # the image's edges, where the grid leaves it
    for line in lines:
        grid_ax.plot(line[:, 0], line[:, 1], color=GRID_COLOR, linewidth=0.8, gid="stn-grid")
    grid_ax.plot(frame[:, 0], frame[:, 1], color=FRAME_COLOR, linewidth=1.6, gid="stn-frame")
    points = np.vstack([frame, *lines]) if lines else frame
    low = np.minimum(points.min(0), -1.0) - 0.05
    high = np.maximum(points.max(0), 1.0) + 0.05
    grid_ax.set_xlim(low[0], high[0])
    grid_ax.set_ylim(high[1], low[1])  # y grows downwards, as in the image
    grid_ax.set_title("input and sampling grid")
    out_ax.imshow(_stn_output(rgb, theta), extent=extent, interpolation="nearest")
    out_ax.set_title("transformed output")
    for ax in (grid_ax, out_ax):
        ax.set_aspect(aspect)
        ax.set_xticks([])
        ax.set_yticks([])


def attention_map_figure(
    image: Image.Image | ArrayLike,
    weights: ArrayLike,
    grid_size: tuple[int, int] | None,
    title: str | None = None,
    *,
    alpha: float = 0.6,
) -> Figure:
    """The image with its region attention drawn over it as a heat map, and a colorbar.

    The weights are upsampled bilinearly (``align_corners=False``) to the image size ``a (H, W)``
    and drawn with the 'inferno' colormap over the image at a per-pixel opacity of
    ``alpha · a / max a`` (as :func:`overlay_attention`: unattended pixels keep the image's
    colours, the most attended are ``alpha``-opaque); the colour scale (the colorbar) runs from
    0 to ``max a``. Axes: ``figure.axes[0]`` holds two images (``images[0]`` the picture,
    ``images[1]`` the upsampled weights ``a``), ``figure.axes[1]`` is the colorbar.

    Args:
        image: a PIL image (any mode), an ``(H, W)`` / ``(H, W, 3)`` array (uint8, or float in
            [0, 1]) or a ``(3, H, W)`` float tensor in [0, 1] (undo any normalisation first).
        weights: ``(n,)`` attention over a row-major ``h × w`` region grid, or ``(h, w)``;
            non-negative, summing to 1 (a softmax output); tensor or array.
        grid_size: ``(h, w)`` with ``h · w = n`` (e.g. ``ImageEncoderOutput.grid_size``); may be
            None for ``(h, w)`` weights.
        title: the axes' title (default: "image attention (h × w regions)").
        alpha: opacity of the heat map where the attention is highest, in [0, 1].

    Returns:
        A :class:`matplotlib.figure.Figure` (Agg canvas; save it with :func:`save_figure`).

    Raises:
        ValueError: weights not ``(n,)`` / ``(h, w)``, empty, not finite, negative or not summing
            to 1; ``grid_size`` missing or with ``h · w ≠ n``; a badly shaped or out-of-range
            image; ``alpha`` outside [0, 1].
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    grid = _weight_grid(weights, grid_size)  # (h, w)
    _check_sums_to_one(grid.ravel(), "weights")
    rgb = _image_array(image)
    figure = _new_figure(4.4, 3.6)
    ax = figure.add_subplot()
    _draw_attention_map(ax, rgb, grid, alpha)
    ax.set_title(title or f"image attention ({grid.shape[0]} × {grid.shape[1]} regions)")
    return figure


def token_attention_figure(tokens: Sequence[str], weights: ArrayLike, title: str | None = None) -> Figure:
    """A horizontal bar chart of the attention over the tokens of a text, first token on top.

    Bar ``j`` (``figure.axes[0].patches[j]``) is ``weights[j]`` long and labelled with token
    ``j``; the value is written beside it. Labels longer than 18 characters are shortened.

    Args:
        tokens: the ``l`` token strings (e.g. from :func:`token_labels`).
        weights: ``(l,)`` attention over the tokens, non-negative, summing to 1; padding tokens
            (weight 0) may be left in or cut off together with their labels.
        title: the axes' title (default: "word attention").

    Returns:
        A :class:`matplotlib.figure.Figure`.

    Raises:
        TypeError: ``tokens`` is one string instead of a list.
        ValueError: weights not ``(l,)``, empty, not finite, negative or not summing to 1, or
            not one weight per token.
    """
    labels = _token_list(tokens)
    values = _distribution(weights, "weights")
    if len(labels) != len(values):
        raise ValueError(
            f"there are {len(labels)} tokens but {len(values)} weights; pass one weight per token"
        )
    figure = _new_figure(4.4, _bars_height(len(labels)))
    ax = figure.add_subplot()
    _draw_token_bars(ax, labels, values)
    ax.set_title(title or "word attention")
    return figure


def coattention_figure(
    affinity: ArrayLike,
    tokens: Sequence[str],
    grid_size: tuple[int, int] | None = None,
    title: str | None = None,
) -> Figure:
    """The co-attention affinity matrix ``C = tanh(Qᵀ W_b V)`` (Lu et al., NeurIPS 2016) as an image.

    Row ``j`` is token ``j`` (labelled), column ``i`` image region ``i``; colours are diverging
    ('RdBu_r', white at 0, limits ``±max |C|``) since ``C`` is signed. With ``grid_size``, thin
    lines separate the columns of each row of the ``h × w`` region grid. ``figure.axes[0].images[0]``
    holds ``C`` itself; ``figure.axes[1]`` is the colorbar.

    Args:
        affinity: ``(l, n)`` float, e.g. ``FusionOutput.maps["affinity"][i]`` of
            :class:`vlkit.fusion.ParallelCoAttention` (values in [-1, 1]; zero at padding).
        tokens: the ``l`` token strings.
        grid_size: ``(h, w)`` of the region grid with ``h · w = n``, or None.
        title: the axes' title (default: :data:`MATRIX_TITLES` ``["affinity"]``).

    Returns:
        A :class:`matplotlib.figure.Figure`.

    Raises:
        TypeError: ``tokens`` is one string instead of a list.
        ValueError: ``affinity`` not a non-empty finite ``(l, n)`` matrix, not one row per token,
            or ``grid_size`` with ``h · w ≠ n``.
    """
    labels = _token_list(tokens)
    matrix = _check_matrix(affinity, labels, grid_size, "affinity")
    l, n = matrix.shape
    figure = _new_figure(min(10.0, max(5.5, 2.5 + 0.18 * n)), _bars_height(l))
    ax = figure.add_subplot()
    _draw_matrix(ax, matrix, labels, grid_size, signed=True, label="C")
    ax.set_title(title or MATRIX_TITLES["affinity"])
    return figure


def stn_grid_figure(
    image: Image.Image | ArrayLike, theta: ArrayLike, grid_lines: int = 8, title: str | None = None
) -> Figure:
    """A spatial transformer's sampling grid over the image, and the transformed output beside it.

    Follows :func:`torch.nn.functional.affine_grid` with ``align_corners=False``: an output
    point ``(x_t, y_t)`` in normalised coordinates (-1 and 1 are the outer edges of the image)
    reads the input at ``(x_s, y_s)ᵀ = θ (x_t, y_t, 1)ᵀ``. Left (``figure.axes[0]``): the image
    in normalised coordinates (``extent = (-1, 1, 1, -1)``, y down) with ``grid_lines`` lines
    per direction of the output's grid mapped by θ; the outer frame is the line with gid
    ``"stn-frame"``, its points θ applied to the corners (-1, -1), (1, -1), (1, 1), (-1, 1),
    (-1, -1). Right (``figure.axes[1]``): the output ``grid_sample(image, affine_grid(θ))``
    (bilinear, zeros outside the image) at the image's size.

    For a spatial transformer between backbone stages (``stn: <stage>``), θ acts on a feature
    map that covers the image, so the grid is drawn in the same normalised coordinates and the
    output shows θ applied to the image.

    Args:
        image: a PIL image, an ``(H, W)`` / ``(H, W, 3)`` array (uint8, or float in [0, 1]) or a
            ``(3, H, W)`` float tensor in [0, 1].
        theta: ``(2, 3)`` affine matrix (or ``(1, 2, 3)``), e.g. ``ImageEncoderOutput.theta[i]``.
        grid_lines: lines per direction, the frame's two edges included (>= 2).
        title: the figure's title, or None.

    Returns:
        A :class:`matplotlib.figure.Figure`.

    Raises:
        ValueError: ``theta`` not one finite ``(2, 3)`` matrix, ``grid_lines < 2``, or a badly
            shaped or out-of-range image.
    """
    if isinstance(grid_lines, bool) or not isinstance(grid_lines, int) or grid_lines < 2:
        raise ValueError(f"grid_lines must be an integer >= 2 (lines per direction), got {grid_lines!r}")
    matrix = _theta_matrix(theta)
    rgb = _image_array(image)
    figure = _new_figure(7.0, 3.6)
    grid_ax, out_ax = figure.subplots(1, 2)
    _draw_stn(grid_ax, out_ax, rgb, matrix, grid_lines)
    if title:
        figure.suptitle(title)
    return figure


def save_figure(figure: Figure, path: str | Path, *, dpi: float | None = None) -> Path:
    """Write a matplotlib figure as a PNG (whatever the suffix), creating missing parent folders.

    Args:
        figure: a :class:`matplotlib.figure.Figure` (e.g. from :func:`vqa_attention_figure`).
        path: where to write.
        dpi: pixels per inch (default: the figure's, :data:`FIGURE_DPI`).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``figure`` is not a matplotlib figure.
    """
    if not isinstance(figure, Figure):
        raise TypeError(f"figure must be a matplotlib.figure.Figure, got {type(figure).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=dpi or figure.dpi, metadata={"Software": None})
    return path


# ---------------------------------------------------------------------------------------------
# what a model attended to, recorded with forward hooks, and the per-task figures


class AttentionMaps(NamedTuple):
    """The attention of one example, as a model's image encoder and fusion returned it.

    Attributes:
        image_weights: ``(n,)`` attention over image regions (``FusionOutput.image_weights``),
            or None if the fusion has none.
        text_weights: ``(l,)`` attention over the tokens (``FusionOutput.text_weights``), or None.
        grid_size: ``(h, w)`` of the region grid (``ImageEncoderOutput.grid_size``), or None.
        matrix: ``(l, n)`` a words × regions map from ``FusionOutput.maps`` (the co-attention
            affinity ``C``, or cross-modal attention with heads averaged), or None.
        matrix_name: the key of ``matrix`` in ``maps`` (one of :data:`MATRIX_TITLES`), or None.
        theta: ``(2, 3)`` the spatial transformer's θ (``ImageEncoderOutput.theta``), or None.
    """

    image_weights: torch.Tensor | None = None
    text_weights: torch.Tensor | None = None
    grid_size: tuple[int, int] | None = None
    matrix: torch.Tensor | None = None
    matrix_name: str | None = None
    theta: torch.Tensor | None = None

    @property
    def has_attention(self) -> bool:
        """Whether the fusion returned any attention: region or token weights, or a matrix."""
        return any(x is not None for x in (self.image_weights, self.text_weights, self.matrix))


class AttentionRecorder:
    """The outputs of a model's ``image_encoder`` and ``fusion`` in the last forward pass.

    Filled by :func:`record_attention`; :meth:`maps` reads one example out of them.

    Attributes:
        image_output: what ``model.image_encoder`` returned (e.g. ``ImageEncoderOutput``), or None.
        fusion_output: what ``model.fusion`` returned (a ``FusionOutput``), or None.
    """

    def __init__(self) -> None:
        self.image_output: Any = None
        self.fusion_output: Any = None

    def maps(self, index: int = 0) -> AttentionMaps:
        """The attention of example ``index`` of the recorded batch (tensors detached, on CPU).

        The matrix is the first of :data:`MATRIX_TITLES` found in ``FusionOutput.maps``:
        ``"affinity"`` and ``"text_to_image"`` ``(b, [heads,] l, n)`` as they are,
        ``"image_to_text"`` ``(b, [heads,] n, l)`` transposed; heads are averaged.

        Raises:
            RuntimeError: the fusion has not run since recording began.
        """
        fused = self.fusion_output
        if fused is None:
            raise RuntimeError(
                "no fusion output was recorded: run the model inside `with record_attention(model) as rec:`"
            )

        def pick(value: Any) -> torch.Tensor | None:
            return None if value is None else value[index].detach().to("cpu", torch.float32)

        matrix = name = None
        maps = getattr(fused, "maps", None) or {}
        for key in MATRIX_TITLES:
            if maps.get(key) is not None:
                matrix, name = pick(maps[key]), key
                matrix = matrix.mean(0) if matrix.dim() == 3 else matrix  # heads averaged
                matrix = matrix.transpose(0, 1) if key == "image_to_text" else matrix  # (l, n)
                break
        encoded = self.image_output
        grid = getattr(encoded, "grid_size", None)
        return AttentionMaps(
            image_weights=pick(getattr(fused, "image_weights", None)),
            text_weights=pick(getattr(fused, "text_weights", None)),
            grid_size=None if grid is None else (int(grid[0]), int(grid[1])),
            matrix=matrix,
            matrix_name=name,
            theta=pick(getattr(encoded, "theta", None)),
        )


@contextmanager
def record_attention(model: nn.Module) -> Iterator[AttentionRecorder]:
    """Keep what ``model.image_encoder`` and ``model.fusion`` return while the block runs.

    Forward hooks only: the model computes exactly what it computes without them, and the hooks
    are removed when the block ends. Works with :class:`vlkit.models.VQAModel`,
    :class:`vlkit.models.SentimentModel` and any module with a ``fusion`` (and optionally an
    ``image_encoder``) sub-module::

        with record_attention(task.model) as recorded:
            answers = task.answer(image, ids)
        attention = recorded.maps(0)

    Args:
        model: the model whose parts to record.

    Yields:
        An :class:`AttentionRecorder`, filled by every forward pass inside the block.

    Raises:
        ValueError: ``model`` has no ``fusion`` sub-module.
    """
    fusion = getattr(model, "fusion", None)
    if not isinstance(fusion, nn.Module):
        raise ValueError(  # noqa: TRY004 - a model of the wrong build, as the other user errors
            f"{type(model).__name__} has no `fusion` module to record; record_attention reads models "
            "built like VQAModel / SentimentModel (image_encoder, text_encoder, fusion, head)"
        )
    recorder = AttentionRecorder()

    def keep(field: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            setattr(recorder, field, output)

        return hook

    handles = [fusion.register_forward_hook(keep("fusion_output"))]
    encoder = getattr(model, "image_encoder", None)
    if isinstance(encoder, nn.Module):
        handles.append(encoder.register_forward_hook(keep("image_output")))
    try:
        yield recorder
    finally:
        for handle in handles:
            handle.remove()


def token_labels(tokenizer: Any, text: str, ids: Sequence[int]) -> list[str]:
    """Readable labels of the token ids that ``tokenizer.encode(text)`` gave, one per id.

    - a :class:`vlkit.text.HFTokenizer`: its subword strings (``[CLS]``, ``lovely``, ``[SEP]``);
    - a :class:`vlkit.text.WordTokenizer`: the words of ``text`` as it splits them, a word out of
      the vocabulary marked ``word (unk)``;
    - anything else: ``tokenizer.decode([id])`` (or the id) per id.
    """
    ids = [int(i) for i in ids]
    backend = getattr(tokenizer, "tokenizer", None)
    if backend is not None and hasattr(backend, "convert_ids_to_tokens"):
        return [str(token) for token in backend.convert_ids_to_tokens(ids)]
    if hasattr(tokenizer, "split") and hasattr(tokenizer, "unk_id"):
        words = tokenizer.split(text, getattr(tokenizer, "lowercase", True))[: len(ids)]
        if len(words) == len(ids):
            return [f"{word} (unk)" if i == tokenizer.unk_id else word for word, i in zip(words, ids)]
    return [tokenizer.decode([i]) or str(i) for i in ids]


def _ranked_line(prefix: str, ranked: Sequence[tuple[str, float]] | None, top: int = 3) -> str | None:
    """``"A: red 0.93 · blue 0.04 · green 0.01"`` for the first ``top`` (name, probability) pairs."""
    if not ranked:
        return None
    return prefix + " · ".join(f"{name} {p:.2f}" for name, p in list(ranked)[:top])


def _attention_panels(
    image: Image.Image | ArrayLike,
    tokens: Sequence[str],
    attention: AttentionMaps,
    title: str | None,
    grid_lines: int,
) -> Figure:
    """One figure of every part of ``attention`` that is set (see :func:`vqa_attention_figure`)."""
    if not attention.has_attention and attention.theta is None:
        raise ValueError(
            "nothing to draw: no region or token attention, no words × regions matrix and no STN θ "
            "(the model's fusion has no attention); check AttentionMaps.has_attention first"
        )
    rgb = _image_array(image)
    labels = _token_list(tokens)
    grid = text = matrix = theta = None
    if attention.image_weights is not None:
        grid = _weight_grid(attention.image_weights, attention.grid_size, "image_weights")
        _check_sums_to_one(grid.ravel(), "image_weights")
    if attention.text_weights is not None:
        text = _distribution(attention.text_weights, "text_weights")
        if len(text) != len(labels):
            raise ValueError(
                f"there are {len(labels)} tokens but {len(text)} text_weights; pass one label per token"
            )
    if attention.matrix is not None:
        matrix = _check_matrix(attention.matrix, labels, attention.grid_size, "matrix")
    if attention.theta is not None:
        theta = _theta_matrix(attention.theta)

    rows = [["image", "image" if text is None else "tokens"]]
    heights = [3.4]
    if matrix is not None:
        rows.append(["matrix", "matrix"])
        heights.append(_bars_height(len(labels)))
    if theta is not None:
        rows.append(["stn_grid", "stn_output"])
        heights.append(3.2)
    figure = _new_figure(8.0, sum(heights) + (0.5 if title else 0.0))
    axes = figure.subplot_mosaic(rows, height_ratios=heights)
    if grid is not None:
        _draw_attention_map(axes["image"], rgb, grid, alpha=0.6)
        axes["image"].set_title(f"image attention ({grid.shape[0]} × {grid.shape[1]} regions)")
    else:
        axes["image"].imshow(rgb, interpolation="nearest")
        axes["image"].set_xticks([])
        axes["image"].set_yticks([])
        axes["image"].set_title("image (this fusion has no region attention)")
    if text is not None:
        _draw_token_bars(axes["tokens"], labels, text)
        axes["tokens"].set_title("word attention")
    if matrix is not None:
        name = attention.matrix_name or "matrix"
        signed = name == "affinity"
        _draw_matrix(
            axes["matrix"], matrix, labels, attention.grid_size, signed, "C" if signed else "attention"
        )
        axes["matrix"].set_title(MATRIX_TITLES.get(name, name))
    if theta is not None:
        _draw_stn(axes["stn_grid"], axes["stn_output"], rgb, theta, grid_lines)
        axes["stn_grid"].set_title("spatial transformer: sampling grid")
    if title:
        figure.suptitle(title, wrap=True)
    return figure


def vqa_attention_figure(
    image: Image.Image | ArrayLike,
    tokens: Sequence[str],
    attention: AttentionMaps,
    question: str | None = None,
    answers: Sequence[tuple[str, float]] | None = None,
    *,
    grid_lines: int = 8,
) -> Figure:
    """Where a VQA model looked: every attention map it returned for one image and question.

    Panels, those present in ``attention`` only: the image with the region attention
    (:func:`attention_map_figure`'s drawing, axes ``"image"``; the plain image if the fusion has
    no region attention), the question's word attention (:func:`token_attention_figure`,
    ``"tokens"``), the words × regions matrix (the co-attention affinity ``C`` as
    :func:`coattention_figure`, or a cross-modal attention map; ``"matrix"``) and the spatial
    transformer's grid and output (:func:`stn_grid_figure`, ``"stn_grid"``, ``"stn_output"``).
    The title gives the question and the top three answers.

    Args:
        image: the input image (PIL, or an array / tensor in [0, 1] as in
            :func:`attention_map_figure`), shown at its own size.
        tokens: the ``l`` question tokens (e.g. :func:`token_labels`); needed when
            ``attention`` has text weights or a matrix.
        attention: from :meth:`AttentionRecorder.maps` (or built by hand).
        question: the question, for the title.
        answers: ``(answer, probability)`` pairs, most likely first, for the title.
        grid_lines: lines per direction of the STN grid (>= 2).

    Returns:
        A :class:`matplotlib.figure.Figure`: ``figure.axes`` holds the panels in the order above,
        then the colorbars (region attention, matrix).

    Raises:
        ValueError: ``attention`` has nothing to draw (no attention and no θ: the fusion has
            none), or a part of it is malformed (the errors of the single figures: weights that
            do not sum to 1, ``h · w ≠ n``, not one token per weight / matrix row, ...).
        TypeError: ``tokens`` is one string.
    """
    lines = [f"Q: {question}" if question else None, _ranked_line("A: ", answers)]
    title = "\n".join(line for line in lines if line) or None
    return _attention_panels(image, tokens, attention, title, grid_lines)


def sentiment_attention_figure(
    image: Image.Image | ArrayLike,
    tokens: Sequence[str],
    attention: AttentionMaps,
    text: str | None = None,
    classes: Sequence[tuple[str, float]] | None = None,
    *,
    grid_lines: int = 8,
) -> Figure:
    """Where a multimodal sentiment model looked, for one image and text.

    The panels of :func:`vqa_attention_figure` (region attention, word attention, words ×
    regions matrix, STN grid: those present in ``attention``); the title gives the text and
    the class probabilities.

    Args:
        image: the input image, as in :func:`vqa_attention_figure`.
        tokens: the ``l`` text tokens (e.g. :func:`token_labels`).
        attention: from :meth:`AttentionRecorder.maps`.
        text: the text, for the title.
        classes: ``(class, probability)`` pairs, most likely first, for the title.
        grid_lines: lines per direction of the STN grid (>= 2).

    Returns:
        A :class:`matplotlib.figure.Figure`.

    Raises:
        ValueError, TypeError: as :func:`vqa_attention_figure`.
    """
    lines = [f"text: {text}" if text else None, _ranked_line("", classes)]
    title = "\n".join(line for line in lines if line) or None
    return _attention_panels(image, tokens, attention, title, grid_lines)
