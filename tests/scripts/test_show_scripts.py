"""Tests for scripts/show_stn.py and scripts/show_cbam.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlkit.vision import ImageEncoder

SCRIPTS = Path(__file__).parents[2] / "scripts"


def load(name):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_show_stn_demo_writes_inputs_with_grid_and_outputs(tmp_path):
    show_stn = load("show_stn")
    out = show_stn.main(["--out", str(tmp_path / "stn.png"), "--size", "32"])
    sheet = Image.open(out)
    assert sheet.size == (4 * 40, 2 * 40)
    assert (255, 0, 0) in {sheet.getpixel((x, y)) for x in range(4, 36) for y in range(4, 36)}  # grid drawn


def test_sampling_grid_of_the_identity_covers_the_image():
    show_stn = load("show_stn")
    points = show_stn.sampling_grid(torch.tensor([[[1.0, 0, 0], [0, 1.0, 0]]]), size=33, lines=3)
    torch.testing.assert_close(points[0, 0, 0], torch.tensor([0.0, 0.0]))
    torch.testing.assert_close(points[0, 2, 2], torch.tensor([32.0, 32.0]))


def test_show_cbam_maps_and_sheet():
    show_cbam = load("show_cbam")
    encoder = ImageEncoder("resnet10t", dim=8, feature_index=2, cbam="stages").eval()
    images = torch.rand(2, 3, 32, 32)
    maps = show_cbam.spatial_maps(encoder, images)
    assert [tuple(m.shape) for m in maps] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]
    assert all(((m > 0) & (m < 1)).all() for m in maps)
    sheet = show_cbam.render(images, maps)
    assert sheet.size == (4 * 36, 2 * 36)
    with pytest.raises(ValueError, match="no CBAM"):
        show_cbam.spatial_maps(ImageEncoder("resnet10t", dim=8, feature_index=2), images)
