"""Tests for scripts/attention_on_object.py: shape masks, the regions that cover them, and the share
of attention on them."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parents[2] / "scripts" / "attention_on_object.py"
spec = importlib.util.spec_from_file_location("attention_on_object", SCRIPT)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalised(pixels: torch.Tensor) -> torch.Tensor:
    """``(b, 3, S, S)`` 0–255 pixels, normalised as the DataModules do."""
    return (pixels / 255.0 - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def test_the_shape_is_what_differs_from_the_background_and_its_regions_are_found():
    pixels = torch.full((1, 3, 8, 8), 240.0)
    pixels[0, :, 5:7, 1:3] = torch.tensor([200.0, 30.0, 30.0])[:, None, None]  # a red square, lower left
    masks = script.shape_masks(normalised(pixels), MEAN, STD, threshold=60)
    assert masks.sum() == 4 and masks[0, 5:7, 1:3].all()
    cover = script.region_cover(masks, (2, 2))  # row-major: top-left, top-right, bottom-left, bottom-right
    assert cover.tolist() == [[False, False, True, False]]
    with pytest.raises(ValueError, match="does not divide"):
        script.region_cover(masks, (3, 3))


def test_attention_share_baseline_and_argmax():
    cover = torch.tensor([[False, False, True, False], [True, True, False, False], [False] * 4])
    weights = torch.tensor([[0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.4, 0.4], [0.25] * 4])
    result = script.attention_on_object(weights, cover)
    # the third image has no shape pixel: left out
    assert torch.allclose(result["share"], torch.tensor([0.7, 0.2]))
    assert torch.allclose(result["baseline"], torch.tensor([0.25, 0.5]))
    assert result["argmax"].tolist() == [1.0, 0.0]
