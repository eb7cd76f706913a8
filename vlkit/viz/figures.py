"""matplotlib attention figures, drawn by Agg through :class:`matplotlib.figure.Figure` (pyplot's
global state is never touched, so they are safe in scripts, tests and servers).

:func:`attention_map_figure` (region attention over the image), :func:`token_attention_figure`
(per-token bars), :func:`coattention_figure` (the co-attention affinity ``C``, tokens ×
regions), :func:`stn_grid_figure` (a spatial transformer's sampling grid and output), and
:func:`save_figure`. The ``_draw_*`` helpers draw one panel on given axes, for the per-task
composites of :mod:`vlkit.viz.tasks`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from vlkit.viz.arrays import (
    ArrayLike,
    _check_matrix,
    _check_sums_to_one,
    _distribution,
    _image_array,
    _theta_matrix,
    _token_list,
    _upsample,
    _weight_grid,
    spotlight,
)

FIGURE_DPI = 100  # pixels per inch of every figure, and of save_figure unless told otherwise
ATTENTION_CMAP = "inferno"  # region attention and non-negative matrices (as heatmap_colors)
AFFINITY_CMAP = "RdBu_r"  # signed matrices: the affinity C = tanh(·) in [-1, 1], white at 0
BAR_COLOR = "#ED6925"  # inferno's orange
GRID_COLOR = "#00E5FF"  # the STN sampling grid: cyan stands out on most images
FRAME_COLOR = "#FF1744"  # the STN grid's outer frame (where the output's corners read from)

#: The words × regions maps a fusion may return in ``FusionOutput.maps``, in the order
#: :meth:`AttentionRecorder.maps` looks for them, with their figure titles.
MATRIX_TITLES = {
    "affinity_scores": "co-attention affinity before its tanh, S = Qᵀ W_b V (C = tanh S)",
    "affinity": "co-attention affinity C = tanh(Qᵀ W_b V)",
    "text_to_image": "cross-modal attention: each word over the regions",
    "image_to_text": "cross-modal attention: each region over the words",
}


def _new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure of ``width × height`` inches drawn by Agg (no pyplot)."""
    figure = Figure(figsize=(width, height), dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # becomes figure.canvas: draw() and savefig() render with Agg
    return figure


def _bars_height(count: int) -> float:
    """Inches of figure height for ``count`` rows of token labels."""
    return max(2.0, 0.28 * count + 1.2)


def _draw_attention_map(ax: Axes, rgb: np.ndarray, grid: np.ndarray, alpha: float) -> None:
    """The image lit by the ``(h, w)`` weights upsampled bilinearly (:func:`spotlight`, unattended
    pixels darkened by ``alpha``) and a colour bar from 0 to the largest weight, drawn in the
    brightness it gives."""
    height, width = rgb.shape[:2]
    heat = _upsample(grid, height, width)  # (H, W), within [grid.min(), grid.max()]
    peak = max(float(heat.max()), 1e-12)
    lit = spotlight(rgb, heat / peak, alpha)  # rgb: float in [0, 1]
    ax.imshow(np.clip(lit, 0.0, 1.0), interpolation="nearest")
    scale = LinearSegmentedColormap.from_list("brightness", [(1.0 - alpha,) * 3, (1.0, 1.0, 1.0)])
    bar = ax.figure.colorbar(
        ScalarMappable(Normalize(0.0, peak), scale), ax=ax, label="attention weight (brightness)", shrink=0.85
    )
    bar.outline.set_edgecolor("0.3")
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
    """The image lit by its region attention, and a colour bar.

    The weights are upsampled bilinearly (``align_corners=False``) to the image size ``a (H, W)``
    and the image is drawn lit by them (:func:`vlkit.viz.arrays.spotlight`, as
    :func:`overlay_attention`'s default): pixels keep ``1 - alpha · (1 - a / max a)`` of their
    brightness, so the most attended keep their exact colours and no colour is laid over the
    image. The colour bar runs from 0 to ``max a`` in the brightness each weight gives. Axes:
    ``figure.axes[0]`` holds the lit picture (``images[0]``), ``figure.axes[1]`` is the colour bar.

    Args:
        image: a PIL image (any mode), an ``(H, W)`` / ``(H, W, 3)`` array (uint8, or float in
            [0, 1]) or a ``(3, H, W)`` float tensor in [0, 1] (undo any normalisation first).
        weights: ``(n,)`` attention over a row-major ``h × w`` region grid, or ``(h, w)``;
            non-negative, summing to 1 (a softmax output); tensor or array.
        grid_size: ``(h, w)`` with ``h · w = n`` (e.g. ``ImageEncoderOutput.grid_size``); may be
            None for ``(h, w)`` weights.
        title: the axes' title (default: "image attention (h × w regions)").
        alpha: how much unattended pixels are darkened, in [0, 1].

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
