"""The cluttered easy-VQA source: one whole shape, small, anywhere, among smaller fragments."""

from __future__ import annotations

import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlkit.data import SOURCES, build_cluttered_easy_vqa
from vlkit.data.cluttered import _clutter_image, shape_box


def shape_image(color: str, box: tuple[int, int, int, int], background=(240, 250, 245)) -> Image.Image:
    image = Image.new("RGB", (64, 64), background)
    ImageDraw.Draw(image).rectangle(box, fill=color)
    return image


def test_the_shape_box_is_what_differs_from_the_background():
    assert shape_box(shape_image("red", (10, 20, 29, 39))) == (10, 20, 30, 40)
    with pytest.raises(ValueError, match="plain"):
        shape_box(Image.new("RGB", (64, 64), "white"))


def test_a_cluttered_image_has_its_shape_inside_and_the_fragments_beside_it():
    source = shape_image("red", (10, 10, 49, 29))  # 40 x 20
    others = [
        (image, shape_box(image))
        for image in (shape_image("blue", (4, 4, 58, 58)), shape_image("green", (6, 6, 60, 60)))
    ]
    image, box = _clutter_image(source, others, random.Random(3), 128, (28, 44), clutter=8, fragment=10)
    x0, y0, x1, y1 = box
    assert image.size == (128, 128) and 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128
    assert 28 <= max(x1 - x0, y1 - y0) <= 44  # the shape's longer side
    pixels = np.asarray(image, dtype=int)
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 80)
    blue_or_green = (pixels[..., 2] > 200) & (pixels[..., 0] < 80) | (pixels[..., 1] > 200) & (
        pixels[..., 0] < 80
    )
    assert red[y0:y1, x0:x1].mean() > 0.8 and red.sum() == red[y0:y1, x0:x1].sum()  # the shape, only there
    assert blue_or_green.any() and not blue_or_green[y0:y1, x0:x1].any()  # clutter, off the shape
    again, same_box = _clutter_image(source, others, random.Random(3), 128, (28, 44), clutter=8, fragment=10)
    assert same_box == box and np.array_equal(np.asarray(again), pixels)  # deterministic


def test_the_source_is_registered_and_checks_its_arguments():
    assert SOURCES["easy_vqa_cluttered"] is build_cluttered_easy_vqa
    with pytest.raises(ValueError, match="fragment < shape_size"):
        build_cluttered_easy_vqa(shape_size=(8, 44), fragment=10, cache=False)
