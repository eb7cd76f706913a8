"""scripts/localisation.py: where a spatial transformer reads and where a spatial map weighs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import localisation

SIZE = 128
BOX = torch.tensor([[32, 64, 64, 96]])  # a 32 × 32 box: 1/16 of the canvas


def test_the_identity_reads_the_box_in_proportion_and_a_zoom_reads_only_the_box():
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    assert localisation.box_share(BOX, SIZE).item() == pytest.approx(1 / 16)
    assert localisation.stn_share_on_box(identity, BOX, SIZE).item() == pytest.approx(1 / 16)
    # zoom ×4 on the box's centre (48, 80) px = (-0.25, 0.25) in normalised coordinates, a bit inside it
    zoom = torch.tensor([[[0.24, 0.0, -0.25], [0.0, 0.24, 0.25]]])
    assert localisation.stn_share_on_box(zoom, BOX, SIZE).item() == 1.0
    elsewhere = torch.tensor([[[0.24, 0.0, 0.6], [0.0, 0.24, -0.6]]])
    assert localisation.stn_share_on_box(elsewhere, BOX, SIZE).item() == 0.0


def test_a_map_on_the_boxs_cells_has_all_its_mass_there():
    attention = torch.zeros(1, 1, 4, 4)
    attention[0, 0, 2, 1] = 1.0  # cell row 2 (y 64-96), column 1 (x 32-64): the box
    share, uniform = localisation.map_share_on_box(attention, BOX, SIZE)
    assert share.item() == 1.0 and uniform.item() == pytest.approx(1 / 16)
    flat, _ = localisation.map_share_on_box(torch.ones(1, 1, 4, 4), BOX, SIZE)
    assert flat.item() == pytest.approx(1 / 16)  # a uniform map: the box cells' share
