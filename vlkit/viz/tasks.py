"""Per-task attention figures: every attention map a VQA or sentiment model returned for one
example, in one figure (:func:`vqa_attention_figure`, :func:`sentiment_attention_figure`), fed by
:func:`vlkit.viz.record_attention`; :func:`save_prediction_figure` draws what a task's ``predict``
returned (``vlkit predict --save_attention``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from vlkit.data.images import load_image
from vlkit.tasks import CaptionPrediction, SentimentPrediction, VQAPrediction
from vlkit.viz.arrays import (
    ArrayLike,
    _check_matrix,
    _check_sums_to_one,
    _distribution,
    _image_array,
    _theta_matrix,
    _token_list,
    _weight_grid,
)
from vlkit.viz.figures import (
    MATRIX_TITLES,
    _bars_height,
    _draw_attention_map,
    _draw_matrix,
    _draw_stn,
    _draw_token_bars,
    _new_figure,
    save_figure,
    stn_grid_figure,
)
from vlkit.viz.overlays import save_caption_attention
from vlkit.viz.recording import AttentionMaps, AttentionRecorder


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
        signed = name in ("affinity", "affinity_scores")
        label = {"affinity": "C", "affinity_scores": "S"}.get(name, "attention")
        _draw_matrix(axes["matrix"], matrix, labels, attention.grid_size, signed, label)
        matrix_title = MATRIX_TITLES.get(name, name)
        if (
            name == "affinity_scores"
        ):  # how much of C = tanh(S) is saturated, where the colours of S still differ
            matrix_title += (
                f"\n{float((np.abs(np.tanh(matrix)) > 0.99).mean()):.0%} of the cells have |C| > 0.99"
            )
        axes["matrix"].set_title(matrix_title)
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


def save_prediction_figure(
    path: str | os.PathLike[str],
    image: str | os.PathLike[str] | Image.Image,
    prediction: VQAPrediction | SentimentPrediction | CaptionPrediction,
    recorded: AttentionRecorder,
    text: str | None = None,
) -> list[str]:
    """Draw what a task attended to for one prediction of its ``predict`` and write it as PNG.

    - a :class:`vlkit.tasks.CaptionPrediction` (``return_attention=True``): the attention map of
      each generated word (:func:`save_caption_attention`), and the spatial transformer's grid in
      ``<path stem>_stn.png`` when the image encoder has one;
    - a VQA or sentiment prediction: :func:`vqa_attention_figure` or
      :func:`sentiment_attention_figure` of what ``recorded`` kept (region and word attention,
      the words × regions matrix, the STN grid), titled with ``text`` (the question or text) and
      the prediction.

    Args:
        path: where to write the PNG.
        image: the image the prediction was made for (a path or a PIL image).
        prediction: one prediction of the task's ``predict``.
        recorded: the :func:`record_attention` recorder of that call (one image).
        text: the question or text, for the title.

    Returns:
        Lines that say what was written (or why nothing was).

    Raises:
        ValueError: a caption prediction made without ``return_attention``.
    """
    picture = load_image(image if isinstance(image, Image.Image) else os.fspath(image))
    theta = getattr(recorded.image_output, "theta", None)
    if isinstance(prediction, CaptionPrediction):
        if prediction.attention is None:
            raise ValueError("the caption prediction has no attention: predict with return_attention=True")
        written = save_caption_attention(
            path, picture, prediction.tokens, prediction.attention, prediction.grid_size
        )
        lines = [f"attention maps written to {written}"]
        if theta is not None:  # the spatial transformer's grid, beside the word panels
            stn = Path(written).with_name(f"{Path(written).stem}_stn.png")
            lines.append(
                f"spatial transformer grid written to {save_figure(stn_grid_figure(picture, theta[0]), stn)}"
            )
        return lines
    if recorded.fusion_name is None:  # a unimodal baseline: no attention, perhaps an STN
        if theta is None:
            return [
                "the model has no fusion (a unimodal baseline), so no attention to draw; no picture written"
            ]
        written = save_figure(stn_grid_figure(picture, theta[0]), path)
        return [f"the model has no fusion; spatial transformer grid written to {written}"]
    attention = recorded.maps(0)
    lines = []
    if not attention.has_attention:
        rest = (
            "drawing the spatial transformer's grid only"
            if attention.theta is not None
            else "no picture written"
        )
        lines.append(f"the {recorded.fusion_name} fusion has no attention to draw; {rest}")
        if attention.theta is None:
            return lines
    if isinstance(prediction, VQAPrediction):
        figure = vqa_attention_figure(picture, prediction.tokens, attention, text, prediction.answers)
    else:
        figure = sentiment_attention_figure(
            picture, prediction.tokens, attention, text, prediction.probabilities
        )
    lines.append(f"attention written to {save_figure(figure, path)}")
    return lines
