"""Tests for vlkit.vision.stn.SpatialTransformer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vlkit.vision import SpatialTransformer, SpatialTransformerOutput, theta_from_params


def pattern(b=2, c=3, size=8, seed=0):
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("transform", ["affine", "attention"])
def test_identity_initialised_stn_returns_its_input(transform):
    stn = SpatialTransformer(3, transform=transform)
    x = pattern()
    out = stn(x)
    assert isinstance(out, SpatialTransformerOutput)
    torch.testing.assert_close(out.theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(2, 2, 3))
    torch.testing.assert_close(out.output, x, atol=1e-5, rtol=0)


@pytest.mark.parametrize("transform", ["affine", "attention"])
def test_identity_initialised_stn_returns_its_input_under_bf16_autocast(transform):
    # autocast would build the sampling grid in bf16 (coordinates off by up to 2^-8)
    stn = SpatialTransformer(3, transform=transform)
    x = pattern(size=32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = stn(x)
    assert out.output.dtype == torch.float32 and out.theta.dtype == torch.float32
    torch.testing.assert_close(out.output, x, atol=1e-5, rtol=0)


def test_pure_translation_moves_the_pattern_by_one_pixel():
    stn = SpatialTransformer(3)
    x = pattern()
    theta = torch.tensor([[1.0, 0.0, 2 / 8], [0.0, 1.0, 0.0]]).expand(2, 2, 3)  # one pixel in x
    out = stn.transform_with(x, theta)
    torch.testing.assert_close(out[..., :-1], x[..., 1:], atol=1e-5, rtol=0)  # V(j) = U(j + 1)
    torch.testing.assert_close(out[..., -1], torch.zeros_like(out[..., -1]), atol=1e-5, rtol=0)


def test_ninety_degree_rotation():
    stn = SpatialTransformer(3)
    x = pattern()
    theta = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]).expand(2, 2, 3)
    out = stn.transform_with(x, theta)
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_attention_transform_zooms_into_a_quadrant():
    stn = SpatialTransformer(1, transform="attention", output_size=(4, 4))
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4, 4:] = 1.0  # top-right quadrant lit
    theta = theta_from_params(torch.tensor([[0.5, 0.5, -0.5]]), "attention")  # s = 1/2, t = (1/2, -1/2)
    torch.testing.assert_close(theta, torch.tensor([[[0.5, 0.0, 0.5], [0.0, 0.5, -0.5]]]))
    out = stn.transform_with(x, theta)
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out, torch.ones(1, 1, 4, 4), atol=1e-5, rtol=0)


def test_output_size():
    stn = SpatialTransformer(3, output_size=(5, 7))
    assert stn(pattern()).output.shape == (2, 3, 5, 7)


def test_gradients_reach_the_localisation_network():
    torch.manual_seed(0)
    stn = SpatialTransformer(3, transform="affine")
    stn(pattern()).output.pow(2).sum().backward()
    for name, p in stn.named_parameters():
        assert p.grad is not None, name
    # at the identity only the last layer's weight gets a gradient (its zero weights block the
    # rest); once it is non-zero, as after training steps, every layer gets one
    assert stn.regressor[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        stn.regressor[-1].weight.normal_(std=1e-3)
    stn.zero_grad()
    stn(pattern()).output.pow(2).sum().backward()
    for name, p in stn.named_parameters():
        assert p.grad.abs().sum() > 0, name


def test_custom_localisation_network():
    loc = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 10))
    stn = SpatialTransformer(3, transform="attention", localization=loc, localization_dim=10)
    out = stn(pattern())
    torch.testing.assert_close(out.output, pattern(), atol=1e-5, rtol=0)


def test_default_localisation_handles_tiny_maps():
    stn = SpatialTransformer(16)
    assert stn(torch.randn(2, 16, 1, 1)).output.shape == (2, 16, 1, 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"transform": "projective"},
        {"in_channels": 0},
        {"output_size": (0, 4)},
        {"localization": nn.Flatten()},
    ],
)
def test_constructor_errors(kwargs):
    with pytest.raises(ValueError):
        SpatialTransformer(**({"in_channels": 3} | kwargs))


def test_forward_errors():
    stn = SpatialTransformer(3)
    with pytest.raises(ValueError, match=r"\(b, 3, H, W\)"):
        stn(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match="theta"):
        stn.transform_with(pattern(), torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="parameters"):
        theta_from_params(torch.zeros(2, 4), "attention")
    with pytest.raises(ValueError, match="valid"):
        theta_from_params(torch.zeros(2, 6), "shear")


@pytest.mark.parametrize("transform", ["affine", "attention", "translation"])
def test_init_scale_starts_as_a_window_on_the_centre(transform):
    # a window of half the side: the 4 × 4 output samples exactly the centre pixels 2..5 of 8 × 8
    stn = SpatialTransformer(3, transform=transform, output_size=(4, 4), init_scale=0.5)
    x = pattern()
    out = stn(x)
    torch.testing.assert_close(out.theta, torch.tensor([[0.5, 0, 0], [0, 0.5, 0]]).expand(2, 2, 3))
    torch.testing.assert_close(out.output, x[..., 2:6, 2:6], atol=1e-5, rtol=0)


def test_translation_window_keeps_its_side_and_stays_inside_the_input():
    positions = torch.tensor([[0.0, 0.0], [5.0, -5.0], [-0.3, 0.7]])
    theta = theta_from_params(positions, "translation", scale=0.25)
    torch.testing.assert_close(theta[:, :, :2], torch.tensor([[0.25, 0.0], [0.0, 0.25]]).expand(3, 2, 2))
    # the window's edges, t ± scale, never pass the input's edges ±1; beyond ±1 it lies on them
    torch.testing.assert_close(theta[1, :, 2], torch.tensor([0.75, -0.75]))
    assert (theta[:, :, 2].abs() + 0.25 <= 1).all()
    torch.testing.assert_close(theta[2, :, 2], 0.75 * torch.tensor([-0.3, 0.7]))


def test_a_regressed_translation_window_is_placed_by_tanh():
    stn = SpatialTransformer(3, transform="translation", init_scale=0.5)
    with torch.no_grad():
        stn.regressor[-1].bias.copy_(torch.tensor([20.0, -0.4]))
    theta = stn(pattern()).theta
    torch.testing.assert_close(theta[0, :, 2], 0.5 * torch.tanh(torch.tensor([20.0, -0.4])))


def test_translation_window_moves_to_a_corner_and_reads_it():
    stn = SpatialTransformer(1, transform="translation", output_size=(4, 4), init_scale=0.5)
    x = torch.zeros(1, 1, 8, 8)
    x[..., :4, 4:] = 1.0  # top-right quadrant lit
    theta = theta_from_params(torch.tensor([[1.0, -1.0]]), "translation", scale=0.5)
    torch.testing.assert_close(stn.transform_with(x, theta), torch.ones(1, 1, 4, 4), atol=1e-5, rtol=0)


def test_saliency_localization_places_the_window_at_the_expected_position_of_its_cells():
    from vlkit.vision.stn import SaliencyLocalization

    fmap = torch.zeros(2, 3, 4, 4)
    fmap[0, 0, 0, 3] = 1.0  # image 0: the object in the top-right cell
    fmap[1, 0, 2, 1] = 1.0  # image 1: row 2, column 1
    locate = SaliencyLocalization(lambda view: fmap[: view.shape[0]], channels=3, size=None)
    image = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(locate(image), torch.zeros(2, 2))  # score 0: uniform, the centre
    with torch.no_grad():
        locate.score.weight[0, 0] = 50.0  # channel 0 marks the object
    torch.testing.assert_close(locate(image), torch.tensor([[1.0, -1.0], [-1 / 3, 1 / 3]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(locate.attention(image).sum((1, 2)), torch.ones(2))
    stn = SpatialTransformer(
        3,
        transform="translation",
        output_size=(4, 4),
        init_scale=0.5,
        localization=locate,
        localization_gives_params=True,
    )
    assert stn.regressor is None
    torch.testing.assert_close(stn(image).theta[0], torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.5, -0.5]]))
    with torch.no_grad():
        locate.score.weight[0, 0] = 1.0
    stn(image).output.sum().backward()  # the gradient reaches the scores through the position
    assert locate.score.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="localization_gives_params needs"):
        SpatialTransformer(3, transform="translation", init_scale=0.5, localization_gives_params=True)


def test_init_scale_errors():
    with pytest.raises(ValueError, match=r"init_scale must be in \(0, 1\]"):
        SpatialTransformer(3, init_scale=1.5)
    with pytest.raises(ValueError, match=r"init_scale must be in \(0, 1\]"):
        SpatialTransformer(3, init_scale=0.0)
    with pytest.raises(ValueError, match="cannot move; give init_scale < 1"):
        SpatialTransformer(3, transform="translation")
    with pytest.raises(ValueError, match=r"scale must be in \(0, 1\]"):
        theta_from_params(torch.zeros(1, 2), "translation", scale=2.0)
