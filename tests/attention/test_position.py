"""Tests for vlkit.attention.position: sinusoidal encodings, 1-D and 2-D.

Contract (docs/mechanisms.md#positional-encodings): ``P[i, 2j] = sin(i / 10000^{2j/d})``,
``P[i, 2j+1] = cos(i / 10000^{2j/d})``; the 2-D grid encoding spends d/2 channels on the
row index and d/2 on the column index, flattened row-major.
"""

from __future__ import annotations

import math

import pytest
import torch

from vlkit.attention import (
    SinusoidalPositionalEncoding,
    sinusoidal_position_encoding,
    sinusoidal_position_encoding_2d,
)


def test_shape_and_dtype():
    enc = sinusoidal_position_encoding(7, 6)
    assert enc.shape == (7, 6)
    assert enc.dtype == torch.float32
    assert sinusoidal_position_encoding(3, 4, dtype=torch.float64).dtype == torch.float64
    assert sinusoidal_position_encoding(0, 4).shape == (0, 4)


def test_position_zero_is_sin0_cos0():
    enc = sinusoidal_position_encoding(3, 8)
    torch.testing.assert_close(enc[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))


def test_hand_values():
    d = 8
    enc = sinusoidal_position_encoding(5, d, dtype=torch.float64)
    # j = 0: frequency 1
    assert enc[1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-12)
    assert enc[1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-12)
    for i in range(5):
        # j = 1: angle i / 10000^(2/d)
        angle = i / 10000 ** (2 / d)
        assert enc[i, 2].item() == pytest.approx(math.sin(angle), abs=1e-12)
        assert enc[i, 3].item() == pytest.approx(math.cos(angle), abs=1e-12)
        # j = 3 (last pair): angle i / 10000^(6/d)
        angle = i / 10000 ** (6 / d)
        assert enc[i, 6].item() == pytest.approx(math.sin(angle), abs=1e-12)
        assert enc[i, 7].item() == pytest.approx(math.cos(angle), abs=1e-12)


def test_custom_base():
    enc = sinusoidal_position_encoding(3, 4, base=100.0, dtype=torch.float64)
    # j = 1: angle i / 100^(2/4) = i / 10
    assert enc[2, 2].item() == pytest.approx(math.sin(0.2), abs=1e-12)
    assert enc[2, 3].item() == pytest.approx(math.cos(0.2), abs=1e-12)


def test_values_in_range_and_sin_cos_pairs_have_unit_norm():
    enc = sinusoidal_position_encoding(300, 64)
    assert enc.abs().max() <= 1.0
    # sin² + cos² = 1 for every (i, j) pair
    torch.testing.assert_close(enc[:, 0::2] ** 2 + enc[:, 1::2] ** 2, torch.ones(300, 32))


@pytest.mark.parametrize("dim", [0, -2, 3, 7])
def test_bad_dim_raises(dim):
    with pytest.raises(ValueError, match="dim"):
        sinusoidal_position_encoding(4, dim)


def test_negative_length_raises():
    with pytest.raises(ValueError, match="length"):
        sinusoidal_position_encoding(-1, 4)


# --------------------------------------------------------------------------- 2-D
def test_2d_shape_and_rows_are_concatenated_1d_encodings():
    height, width, dim = 3, 4, 8
    grid = sinusoidal_position_encoding_2d(height, width, dim)
    assert grid.shape == (height * width, dim)
    p_row = sinusoidal_position_encoding(height, dim // 2)
    p_col = sinusoidal_position_encoding(width, dim // 2)
    for r in range(height):
        for c in range(width):
            torch.testing.assert_close(grid[r * width + c], torch.cat([p_row[r], p_col[c]]))


def test_2d_hand_values():
    grid = sinusoidal_position_encoding_2d(2, 3, 8, dtype=torch.float64)
    r, c, width = 1, 2, 3
    row = grid[r * width + c]
    # first half: row index r = 1; second half: column index c = 2 (d/2 = 4 channels each)
    assert row[0].item() == pytest.approx(math.sin(1.0), abs=1e-12)
    assert row[1].item() == pytest.approx(math.cos(1.0), abs=1e-12)
    assert row[2].item() == pytest.approx(math.sin(1 / 10000 ** (2 / 4)), abs=1e-12)
    assert row[4].item() == pytest.approx(math.sin(2.0), abs=1e-12)
    assert row[5].item() == pytest.approx(math.cos(2.0), abs=1e-12)
    assert row[7].item() == pytest.approx(math.cos(2 / 10000 ** (2 / 4)), abs=1e-12)


@pytest.mark.parametrize("dim", [0, 2, 6, 10])
def test_2d_dim_not_multiple_of_4_raises(dim):
    with pytest.raises(ValueError, match="multiple of 4"):
        sinusoidal_position_encoding_2d(2, 2, dim)


# --------------------------------------------------------------------------- module
def test_module_adds_the_table():
    layer = SinusoidalPositionalEncoding(dim=6, max_len=10)
    x = torch.randn(2, 4, 6)
    expected = x + sinusoidal_position_encoding(4, 6)[None]
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(layer(torch.zeros(1, 10, 6))[0], sinusoidal_position_encoding(10, 6))


def test_module_keeps_input_dtype():
    layer = SinusoidalPositionalEncoding(dim=4, max_len=5)
    assert layer(torch.zeros(1, 3, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_module_buffer_is_not_a_parameter():
    layer = SinusoidalPositionalEncoding(dim=4, max_len=5)
    assert list(layer.parameters()) == []
    assert "encoding" not in layer.state_dict()


def test_module_errors():
    layer = SinusoidalPositionalEncoding(dim=4, max_len=5)
    with pytest.raises(ValueError, match="max_len"):
        layer(torch.zeros(1, 6, 4))  # too long
    with pytest.raises(ValueError):
        layer(torch.zeros(1, 3, 6))  # wrong width
    with pytest.raises(ValueError):
        SinusoidalPositionalEncoding(dim=5)
