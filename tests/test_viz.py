"""Tests for vlkit.viz: heat-map colours, attention overlays and caption figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vlkit.viz import (
    INFERNO_ANCHORS,
    caption_attention_figure,
    heatmap_colors,
    overlay_attention,
    save_caption_attention,
)

GREY = (128, 128, 128)


def grey(size=(64, 48)) -> Image.Image:
    return Image.new("RGB", size, GREY)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


# heatmap_colors


def test_heatmap_colors_ends_are_the_colormap_ends():
    colours = heatmap_colors(np.array([[0.0, 1.0]]))
    assert colours.shape == (1, 2, 3) and colours.dtype == np.uint8
    assert tuple(colours[0, 0]) == (0, 0, 4) == tuple(INFERNO_ANCHORS[0].astype(int))
    assert tuple(colours[0, 1]) == (252, 255, 164) == tuple(INFERNO_ANCHORS[-1].astype(int))


def test_heatmap_colors_brightness_is_monotone_and_out_of_range_values_clip():
    values = torch.linspace(0, 1, 257).reshape(1, -1)
    luma = heatmap_colors(values).astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])  # (1, 257)
    assert (np.diff(luma[0]) >= -0.5).all()  # non-decreasing up to uint8 rounding
    assert luma[0, -1] - luma[0, 0] > 200
    clipped = heatmap_colors(np.array([-3.0, 7.0]))
    np.testing.assert_array_equal(clipped, heatmap_colors(np.array([0.0, 1.0])))


def test_heatmap_colors_rejects_nan():
    with pytest.raises(ValueError, match="NaN or inf"):
        heatmap_colors(np.array([[0.5, np.nan]]))


# overlay_attention


def test_overlay_keeps_size_and_returns_rgb():
    image = Image.new("L", (40, 30), 100)
    out = overlay_attention(image, torch.rand(6), grid_size=(2, 3))
    assert out.mode == "RGB" and out.size == (40, 30)


def test_the_spotlight_keeps_the_attended_colours_and_darkens_the_rest():
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    out = pixels(overlay_attention(image, torch.tensor([1.0, 0.0, 0.0, 0.0]), grid_size=(2, 2), alpha=0.75))
    original = pixels(image)
    np.testing.assert_array_equal(out[0, 0], original[0, 0])  # the most attended pixel: its exact colour
    np.testing.assert_array_equal(out[-1, -1], np.rint(0.25 * original[-1, -1]))  # unattended: a quarter
    # no colour is added: every pixel is its own colour scaled, so a yellow shape stays yellow
    light = out.sum(-1, keepdims=True) / np.maximum(original.sum(-1, keepdims=True), 1)
    np.testing.assert_allclose(out, original * light, atol=1.5)
    with pytest.raises(ValueError, match="style must be 'spotlight' or 'heatmap'"):
        overlay_attention(image, torch.rand(4), grid_size=(2, 2), style="contour")


def test_overlay_highlights_the_attended_region():
    image = grey((64, 64))
    out = pixels(
        overlay_attention(image, torch.tensor([1.0, 0.0, 0.0, 0.0]), grid_size=(2, 2), style="heatmap")
    )
    change = np.abs(out - pixels(image)).sum(-1)  # (H, W)
    top_left, bottom_right = change[:32, :32].mean(), change[32:, 32:].mean()
    assert top_left > 50
    assert top_left > 5 * bottom_right
    assert change[-1, -1] == 0  # far from the attended region: untouched
    # the most attended pixel is alpha-blended with the colormap's top colour
    expected = np.rint(0.4 * np.array(GREY) + 0.6 * INFERNO_ANCHORS[-1])
    np.testing.assert_array_equal(out[0, 0], expected)


def test_overlay_all_zero_weights_returns_the_image_unchanged():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    out = overlay_attention(image, np.zeros((3, 5)))
    np.testing.assert_array_equal(pixels(out), pixels(image))
    out = overlay_attention(image, torch.rand(3, 5), alpha=0.0)
    np.testing.assert_array_equal(pixels(out), pixels(image))


def test_overlay_normalises_by_the_max():
    weights = torch.rand(4, 4)
    a = overlay_attention(grey(), weights)
    b = overlay_attention(grey(), weights * 37.0)
    np.testing.assert_array_equal(pixels(a), pixels(b))


def test_overlay_grid_input_equals_flat_input_with_grid_size():
    weights = torch.rand(3, 4)  # h = 3 rows, w = 4 columns
    grid = overlay_attention(grey(), weights)
    flat = overlay_attention(grey(), weights.flatten(), grid_size=(3, 4))
    numpy_flat = overlay_attention(grey(), weights.flatten().numpy(), grid_size=(3, 4))
    np.testing.assert_array_equal(pixels(grid), pixels(flat))
    np.testing.assert_array_equal(pixels(grid), pixels(numpy_flat))
    transposed = overlay_attention(grey(), weights.flatten(), grid_size=(4, 3))
    assert not np.array_equal(pixels(grid), pixels(transposed))  # row-major order matters


@pytest.mark.parametrize(
    ("weights", "grid_size", "alpha", "match"),
    [
        (torch.rand(4), None, 0.6, "grid_size"),
        (torch.rand(6), (2, 2), 0.6, r"2 \* 2 = 4 regions but weights have n = 6"),
        (torch.rand(2, 3), (3, 2), 0.6, r"shape \(2, 3\) but grid_size is \(3, 2\)"),
        (torch.rand(2, 2, 2), None, 0.6, r"shape \(n,\) or \(h, w\)"),
        (torch.rand(0), (0, 0), 0.6, "grid_size must be"),
        (torch.rand(4), (2, 2), 1.5, r"alpha must be in \[0, 1\]"),
        (torch.rand(4), (2, 2), -0.1, r"alpha must be in \[0, 1\]"),
        (torch.tensor([1.0, float("inf")]), (1, 2), 0.6, "NaN or inf"),
    ],
)
def test_overlay_errors(weights, grid_size, alpha, match):
    with pytest.raises(ValueError, match=match):
        overlay_attention(grey(), weights, grid_size=grid_size, alpha=alpha)


# caption_attention_figure


def cell_size(panel_size: int = 32) -> tuple[int, int, int]:
    """The width and height of one panel cell and the height of the legend under the panels."""
    one_row = caption_attention_figure(
        grey(), list("abcd"), torch.rand(4, 4), (2, 2), columns=5, panel_size=panel_size
    )
    two_rows = caption_attention_figure(
        grey(), ["a"], torch.rand(1, 4), (2, 2), columns=1, panel_size=panel_size
    )
    assert one_row.width % 5 == 0
    cell_height = two_rows.height - one_row.height
    return one_row.width // 5, cell_height, one_row.height - cell_height


@pytest.mark.parametrize(("num_words", "columns"), [(4, 5), (5, 5), (9, 3), (2, 5), (3, 1)])
def test_figure_is_a_grid_of_panels(num_words, columns):
    cell_width, cell_height, legend = cell_size()
    assert cell_width >= 32 and cell_height > 32 and legend > 10  # the panel plus its title; the legend
    figure = caption_attention_figure(
        grey(),
        [f"w{i}" for i in range(num_words)],
        torch.rand(num_words, 2, 2),
        columns=columns,
        panel_size=32,
    )
    panels = num_words + 1
    assert figure.mode == "RGB"
    assert figure.size == (
        min(columns, panels) * cell_width,
        math.ceil(panels / columns) * cell_height + legend,
    )


def test_figure_panels_follow_the_weights_and_words():
    weights = torch.zeros(3, 4)
    weights[0, 0] = weights[1, 0] = weights[2, 3] = 1.0  # words 0 and 1 look top-left, word 2 bottom-right
    image = grey((48, 48))
    figure = pixels(
        caption_attention_figure(image, ["a", "a", "b"], weights, (2, 2), columns=4, panel_size=48)
    )
    cell_width, cell_height = figure.shape[1] // 4, cell_size(48)[1]
    panels = [figure[:cell_height, i * cell_width : (i + 1) * cell_width] for i in range(4)]
    box = (slice(4, 52), slice(4, 52))  # the 48 × 48 panel image inside its cell (4 px padding)
    np.testing.assert_array_equal(panels[0][box], np.full((48, 48, 3), 128.0))  # the plain image
    np.testing.assert_array_equal(panels[1], panels[2])  # same word, same weights
    assert not np.array_equal(panels[1][box], panels[3][box])  # different weights
    # lit where attended (the image's own grey), dark elsewhere
    assert (panels[1][box][:4, :4] == 128).all() and panels[1][box][-4:, -4:].max() < 40
    assert (panels[3][box][-4:, -4:] == 128).all() and panels[3][box][:4, :4].max() < 40
    # the title strip under the panel has dark text on white
    title = panels[1][52:]
    assert (title == 255).all(-1).mean() > 0.5 and (title.sum(-1) < 200).any()
    # the legend under the panels: a ramp from dark to white, then its explanation
    legend = figure[cell_height:]
    assert legend[:, :4].min() == 255 and legend.min() < 70


def test_figure_word_titles_differ():
    weights = torch.ones(2, 4)
    figure = pixels(
        caption_attention_figure(grey(), ["dog", "WWW"], weights, (2, 2), columns=3, panel_size=32)
    )
    cell_width = figure.shape[1] // 3
    titles = [figure[40:, i * cell_width : (i + 1) * cell_width] for i in (1, 2)]
    assert not np.array_equal(*titles)


def test_figure_long_words_and_non_square_images():
    figure = caption_attention_figure(
        Image.new("RGB", (80, 20), GREY), ["a" * 200], torch.rand(1, 3, 3), columns=2, panel_size=32
    )
    cell_width, cell_height, legend = cell_size()
    assert figure.size == (2 * cell_width, cell_height + legend)


@pytest.mark.parametrize(
    ("words", "weights", "grid_size", "kwargs", "match"),
    [
        (["a", "b"], torch.rand(3, 4), (2, 2), {}, "T = 3 rows but there are 2 words"),
        (["a"], torch.rand(1, 4), None, {}, "grid_size"),
        (["a"], torch.rand(1, 4), (3, 2), {}, r"3 \* 2 = 6 regions"),
        (["a"], torch.rand(4), (2, 2), {}, r"\(T, n\) or \(T, h, w\)"),
        (["a"], torch.rand(1, 1, 2, 2), None, {}, r"\(T, n\) or \(T, h, w\)"),
        (["a"], torch.rand(1, 4), (2, 2), {"columns": 0}, "columns must be at least 1"),
        (["a"], torch.rand(1, 4), (2, 2), {"panel_size": 0}, "panel_size must be at least 1"),
    ],
)
def test_figure_errors(words, weights, grid_size, kwargs, match):
    with pytest.raises(ValueError, match=match):
        caption_attention_figure(grey(), words, weights, grid_size=grid_size, **kwargs)


def test_figure_words_must_be_a_list_not_a_string():
    with pytest.raises(TypeError, match="list of strings"):
        caption_attention_figure(grey(), "ab", torch.rand(2, 4), (2, 2))


# save_caption_attention


def test_save_writes_a_readable_png(tmp_path):
    weights = torch.softmax(torch.randn(3, 49), dim=-1)
    path = save_caption_attention(
        tmp_path / "new" / "dir" / "caption.png",
        grey(),
        ["a", "red", "circle"],
        weights,
        (7, 7),
        panel_size=40,
    )
    assert path == tmp_path / "new" / "dir" / "caption.png"
    with Image.open(path) as saved:
        assert saved.format == "PNG"
        saved.load()
        np.testing.assert_array_equal(
            pixels(saved.convert("RGB")),
            pixels(caption_attention_figure(grey(), ["a", "red", "circle"], weights, (7, 7), panel_size=40)),
        )


def test_importing_vlkit_does_not_import_viz():
    import subprocess
    import sys

    code = "import sys, vlkit; print('vlkit.viz' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
