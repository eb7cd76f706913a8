"""Attention pictures: Pillow overlays and caption figures, and matplotlib attention figures.

Pillow (no matplotlib; :mod:`vlkit.viz.overlays`): :func:`heatmap_colors`,
:func:`overlay_attention`, :func:`caption_attention_figure` and :func:`save_caption_attention`,
used by ``vlkit predict --save_attention`` for image captioning (one panel per generated word).

matplotlib (the Agg backend through :class:`matplotlib.figure.Figure`; pyplot's global state is
never touched, so this is safe in scripts, tests and servers; :mod:`vlkit.viz.figures`):
:func:`attention_map_figure` (region attention over the image), :func:`token_attention_figure`
(per-token bars), :func:`coattention_figure` (the co-attention affinity ``C``, tokens × regions),
:func:`stn_grid_figure` (a spatial transformer's sampling grid and output), and the per-task
composites :func:`vqa_attention_figure` and :func:`sentiment_attention_figure`
(:mod:`vlkit.viz.tasks`), fed by :func:`record_attention` (forward hooks that keep what a model's
image encoder and fusion returned; :mod:`vlkit.viz.recording`) and written by :func:`save_figure`.
The array checks they share are in :mod:`vlkit.viz.arrays`.

Shape legend:
    H, W   image height and width in pixels
    h, w   rows and columns of the attention grid (image regions), n = h · w
    l      number of text tokens
    T      number of generated words

Region order: a ``(n,)`` weight vector is a row-major ``h × w`` grid, i.e. region ``i`` is at
row ``i // w``, column ``i % w`` (the order of ``features.flatten(2).transpose(1, 2)`` for a
``(b, d, h, w)`` feature map).

This package is not imported by ``vlkit/__init__.py``; import it as ``vlkit.viz``.
"""

from vlkit.viz.arrays import INFERNO_ANCHORS, MAX_LABEL_CHARS, WEIGHT_SUM_TOLERANCE, ArrayLike, heatmap_colors
from vlkit.viz.figures import (
    AFFINITY_CMAP,
    ATTENTION_CMAP,
    BAR_COLOR,
    FIGURE_DPI,
    FRAME_COLOR,
    GRID_COLOR,
    MATRIX_TITLES,
    attention_map_figure,
    coattention_figure,
    save_figure,
    stn_grid_figure,
    token_attention_figure,
)
from vlkit.viz.overlays import (
    IMAGE_TITLE,
    PANEL_PADDING,
    caption_attention_figure,
    overlay_attention,
    save_caption_attention,
)
from vlkit.viz.recording import AttentionMaps, AttentionRecorder, record_attention, token_labels
from vlkit.viz.tasks import save_prediction_figure, sentiment_attention_figure, vqa_attention_figure

__all__ = [
    "AFFINITY_CMAP",
    "ATTENTION_CMAP",
    "BAR_COLOR",
    "FIGURE_DPI",
    "FRAME_COLOR",
    "GRID_COLOR",
    "IMAGE_TITLE",
    "INFERNO_ANCHORS",
    "MATRIX_TITLES",
    "MAX_LABEL_CHARS",
    "PANEL_PADDING",
    "WEIGHT_SUM_TOLERANCE",
    "ArrayLike",
    "AttentionMaps",
    "AttentionRecorder",
    "attention_map_figure",
    "caption_attention_figure",
    "coattention_figure",
    "heatmap_colors",
    "overlay_attention",
    "record_attention",
    "save_caption_attention",
    "save_figure",
    "save_prediction_figure",
    "sentiment_attention_figure",
    "stn_grid_figure",
    "token_attention_figure",
    "token_labels",
    "vqa_attention_figure",
]
