"""Pillow attention pictures (no matplotlib): heat-map overlays and caption figures.

:func:`overlay_attention` draws one attention map over an image; :func:`caption_attention_figure`
and :func:`save_caption_attention` draw one panel per generated word of a captioning model (used
by ``vlkit predict --save_attention``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlkit.viz.arrays import ArrayLike, _as_float_array, _upsample, _weight_grid, heatmap_colors, spotlight

PANEL_PADDING = 4  # pixels of white around each panel and between a panel and its title
CAPTION_DIM = 0.75  # caption panels: unattended pixels at a quarter of their brightness
IMAGE_TITLE = "image"


def overlay_attention(
    image: Image.Image,
    weights: ArrayLike,
    grid_size: tuple[int, int] | None = None,
    alpha: float = 0.6,
    style: str = "spotlight",
) -> Image.Image:
    """Draw an attention map over an image.

    The weights are divided by their maximum (so the most attended region is 1; negative values
    are clipped to 0) and upsampled bilinearly (``align_corners=False``) to the image size, ``a``
    in [0, 1] at each pixel. Then, by ``style``:

    - ``"spotlight"`` (default): the image lit by its attention (:func:`spotlight`),
      ``out = (1 - alpha · (1 - a)) · image``: the most attended pixels keep their exact colours,
      unattended ones are darkened to ``1 - alpha`` of their brightness. No colour is added, so
      none of the image's colours can be hidden.
    - ``"heatmap"``: an 'inferno' heat map (:func:`heatmap_colors`) blended over the image with
      a per-pixel opacity of ``alpha · a``: ``out = (1 - alpha · a) · image + alpha · a ·
      heatmap_colors(a)``; unattended pixels keep the image's colours.

    All-zero weights (nothing attended) return the image unchanged, as does ``alpha = 0``.

    Args:
        image: any-mode PIL image of size ``W × H`` (converted to RGB).
        weights: ``(n,)`` attention weights over a row-major ``h × w`` region grid (then
            ``grid_size`` is required) or ``(h, w)``; float, non-negative (e.g. a softmax
            output), any scale.
        grid_size: ``(h, w)`` with ``h · w = n`` for ``(n,)`` weights; optional for ``(h, w)``
            weights (it must then equal their shape).
        alpha: in [0, 1]: how much unattended pixels are darkened (spotlight), or the heat map's
            opacity where the attention is highest (heatmap).
        style: ``"spotlight"`` or ``"heatmap"``.

    Returns:
        RGB PIL image of the same size ``W × H`` as ``image``.

    Raises:
        ValueError: if ``weights`` are not ``(n,)`` or ``(h, w)``, ``(n,)`` weights come without
            ``grid_size`` or with ``h · w ≠ n``, ``grid_size`` disagrees with ``(h, w)`` weights,
            the weights are empty or not finite, ``alpha`` is outside [0, 1] or ``style`` is
            neither ``"spotlight"`` nor ``"heatmap"``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if style not in ("spotlight", "heatmap"):
        raise ValueError(f"style must be 'spotlight' or 'heatmap', got {style!r}")
    grid = _weight_grid(weights, grid_size)
    rgb = image.convert("RGB")
    peak = grid.max()
    if peak <= 0 or alpha == 0:
        return rgb  # convert() always returns a new image
    grid = np.clip(grid / peak, 0.0, 1.0)  # (h, w) in [0, 1]
    width, height = rgb.size
    upsampled = np.clip(_upsample(grid, height, width), 0.0, 1.0)  # (H, W)
    pixels = np.asarray(rgb, dtype=np.float64)  # (H, W, 3)
    if style == "spotlight":
        blended = spotlight(pixels, upsampled, alpha)
    else:
        colours = heatmap_colors(upsampled).astype(np.float64)  # (H, W, 3)
        opacity = (alpha * upsampled)[..., None]  # (H, W, 1)
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
    :func:`overlay_attention` of that word's weights (spotlight style, unattended pixels at
    ``1 - CAPTION_DIM`` of their brightness, each panel normalised by its own maximum) and the
    word written under it with that maximum weight in brackets. Panels are laid out row by row,
    ``columns`` per row, on a white background, above a legend: a brightness ramp and what it
    means. The image is scaled (aspect ratio kept) so that its longer side is ``panel_size``
    pixels; titles wider than the panel are shortened with "..".

    Every panel occupies a cell of ``panel_size + 2 · PANEL_PADDING`` pixels wide and
    ``panel_size`` plus a title strip tall; the figure is ``min(columns, T + 1)`` cells wide
    and ``ceil((T + 1) / columns)`` cells tall, plus the legend's strip (two title lines).

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
        (f"{word} ({grid.max():.2f})", overlay_attention(thumb, grid, alpha=CAPTION_DIM))
        for word, grid in zip(words, grids)
    ]
    num_columns = min(columns, len(panels))
    num_rows = math.ceil(len(panels) / columns)
    legend_height = 2 * title_height + 2 * PANEL_PADDING
    figure = Image.new("RGB", (num_columns * cell_width, num_rows * cell_height + legend_height), "white")
    draw = ImageDraw.Draw(figure)
    _draw_brightness_legend(draw, font, num_rows * cell_height, num_columns * cell_width, title_height)
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


def _draw_brightness_legend(draw: ImageDraw.ImageDraw, font, top: int, width: int, line: int) -> None:
    """The caption figure's scale: a ramp from the darkest to the full brightness of a panel,
    and what it means."""
    ramp_width = max(1, min(width - 2 * PANEL_PADDING, 160))
    y0 = top + PANEL_PADDING
    for x in range(ramp_width):  # brightness of a white pixel at attention x / (ramp_width - 1)
        level = 1.0 - CAPTION_DIM * (1.0 - x / max(ramp_width - 1, 1))
        draw.line(
            [(PANEL_PADDING + x, y0), (PANEL_PADDING + x, y0 + line - PANEL_PADDING)],
            fill=(round(255 * level),) * 3,
        )
    draw.rectangle(
        [PANEL_PADDING, y0, PANEL_PADDING + ramp_width - 1, y0 + line - PANEL_PADDING], outline="black"
    )
    text = "brightness: attention weight from 0 to the panel's largest (in brackets)"
    draw.text(
        (PANEL_PADDING, y0 + line),
        _fit_text(draw, text, font, width - 2 * PANEL_PADDING),
        fill="black",
        font=font,
    )


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
