"""Tests for vlkit.vision.cbam against the equations of docs/mechanisms.md#channel-and-spatial-attention."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers.cbam import ChannelAttn

from vlkit.vision import CBAM, ChannelAttention, SpatialAttention
from vlkit.vision import cbam as vlkit_cbam


def feature_map(seed=0, c=32, h=5, w=6):
    return torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_cbam_under_constant_weights_matches_a_hand_evaluation():
    c, r = 32, 16
    cbam = CBAM(c, reduction=r, kernel_size=7)
    for p in cbam.parameters():
        torch.nn.init.constant_(p, 0.05)
    x = feature_map(c=c)

    # channel attention: shared MLP C -> C/r -> C, every weight 0.05, ReLU, no bias
    def mlp(v):  # v: (b, C)
        hidden = torch.relu(0.05 * v.sum(-1, keepdim=True)).expand(-1, c // r)
        return (0.05 * hidden.sum(-1, keepdim=True)).expand(-1, c)

    m_c = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))  # (b, C)
    f1 = x * m_c[:, :, None, None]
    # spatial attention: 7x7 conv (weights 0.05, bias 0.05, zero padding 3) over [mean_c; max_c]
    pooled = f1.mean(1) + f1.amax(1)  # the two input channels have the same weights: sum them
    padded = torch.nn.functional.pad(pooled, (3, 3, 3, 3))
    conv = torch.zeros_like(pooled)
    for i in range(pooled.shape[1]):
        for j in range(pooled.shape[2]):
            conv[:, i, j] = 0.05 * padded[:, i : i + 7, j : j + 7].sum((1, 2)) + 0.05
    m_s = torch.sigmoid(conv)[:, None]
    torch.testing.assert_close(cbam(x), f1 * m_s)
    torch.testing.assert_close(cbam.spatial_map(x), m_s)


def test_channel_attention_is_timm_channel_attn_with_the_spec_contract():
    layer = ChannelAttention(32, reduction=16)
    assert isinstance(layer, ChannelAttn)
    assert layer.fc1.out_channels == 2 and layer.fc1.bias is None
    x = feature_map()
    w1, w2 = layer.fc1.weight[:, :, 0, 0], layer.fc2.weight[:, :, 0, 0]

    def mlp(v):
        return torch.relu(v @ w1.T) @ w2.T

    expected = torch.sigmoid(mlp(x.mean((2, 3))) + mlp(x.amax((2, 3))))
    torch.testing.assert_close(layer.attention_map(x)[:, :, 0, 0], expected)
    torch.testing.assert_close(layer(x), x * expected[:, :, None, None])


def test_channel_attention_depends_on_both_avg_and_max_descriptors():
    torch.manual_seed(0)
    layer = ChannelAttention(8, reduction=2)
    x = torch.rand(1, 8, 4, 4)
    # same mean, different max: move mass inside each channel
    y = x.clone()
    y[..., 0, 0] += 1.0
    y[..., 0, 1] -= 1.0
    assert torch.allclose(x.mean((2, 3)), y.mean((2, 3)))
    assert not torch.allclose(layer.attention_map(x), layer.attention_map(y))
    # same max, different mean
    z = x.clone()
    z[..., 3, 3] = z.amin((2, 3)) - 1.0  # lower a non-max element
    assert torch.allclose(x.amax((2, 3)), z.amax((2, 3))) and not torch.allclose(
        x.mean((2, 3)), z.mean((2, 3))
    )
    assert not torch.allclose(layer.attention_map(x), layer.attention_map(z))


def test_spatial_attention_matches_the_equation_and_keeps_the_size():
    layer = SpatialAttention(kernel_size=3)
    x = feature_map()
    pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    m_s = torch.sigmoid(torch.nn.functional.conv2d(pooled, layer.conv.weight, layer.conv.bias, padding=1))
    torch.testing.assert_close(layer(x), x * m_s)
    assert layer.attention_map(x).shape == (2, 1, 5, 6)


def test_normalised_spatial_attention_matches_the_authors_form():
    """norm=True: σ(BN(conv(pooled))) with a bias-free convolution; in training the logits are
    standardised over the batch and the map, in eval mode by the running statistics."""
    torch.manual_seed(0)
    layer = SpatialAttention(kernel_size=3, norm=True)
    assert layer.conv.bias is None and isinstance(layer.norm, torch.nn.BatchNorm2d)
    x = feature_map()
    pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    logits = torch.nn.functional.conv2d(pooled, layer.conv.weight, padding=1)
    standard = (logits - logits.mean()) / torch.sqrt(logits.var(unbiased=False) + layer.norm.eps)
    torch.testing.assert_close(layer(x), x * torch.sigmoid(standard))
    layer.eval()
    running = (logits - layer.norm.running_mean) / torch.sqrt(layer.norm.running_var + layer.norm.eps)
    torch.testing.assert_close(layer(x), x * torch.sigmoid(running))


def test_normalised_spatial_map_keeps_its_contrast_on_features_of_a_large_scale():
    """On features 50 times larger (a late backbone stage's scale) the plain map's logits are 50
    times larger and the map nears 0 or 1 everywhere; the normalised map's logits are unchanged."""
    torch.manual_seed(0)
    plain = SpatialAttention(kernel_size=3)
    normed = SpatialAttention(kernel_size=3, norm=True)
    with torch.no_grad():
        normed.conv.weight.copy_(plain.conv.weight)
        plain.conv.bias.zero_()
    x = feature_map()
    saturated = plain.attention_map(50 * x)
    assert ((saturated < 0.01) | (saturated > 0.99)).float().mean() > 0.9
    torch.testing.assert_close(normed.attention_map(50 * x), normed.attention_map(x), rtol=1e-4, atol=1e-4)
    assert normed.attention_map(50 * x).std() > 0.1


def test_cbam_order_is_channel_first():
    torch.manual_seed(0)
    cbam = CBAM(32, reduction=4)
    x = feature_map()
    torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x)))
    assert not torch.allclose(cbam(x), cbam.channel(cbam.spatial(x)))


def test_gradients_reach_every_parameter():
    cbam = CBAM(32, reduction=8)
    cbam(feature_map()).pow(2).sum().backward()
    for name, p in cbam.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_cbam_works_as_a_timm_residual_block_attention_layer():
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=0, block_args={"attn_layer": CBAM})
    blocks = [m for m in model.modules() if isinstance(m, CBAM)]
    assert len(blocks) == 4  # one per residual block of resnet10t
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for block in blocks for p in block.parameters())


@pytest.mark.parametrize(
    "call",
    [
        lambda: ChannelAttention(0),
        lambda: ChannelAttention(8, reduction=0),
        lambda: SpatialAttention(4),
        lambda: SpatialAttention(0),
        lambda: ChannelAttention(8)(torch.randn(1, 4, 3, 3)),
        lambda: SpatialAttention()(torch.randn(4, 3, 3)),
    ],
)
def test_errors(call):
    with pytest.raises(ValueError):
        call()


def _timm_style_cbam(cbam, x):
    """The same CBAM written with ``amax`` pooling (timm's ops), with cbam's weights."""
    ch = cbam.channel
    avg = ch.fc2(ch.act(ch.fc1(x.mean((2, 3), keepdim=True))))
    mx = ch.fc2(ch.act(ch.fc1(x.amax((2, 3), keepdim=True))))
    f1 = x * torch.sigmoid(avg + mx)
    pooled = torch.cat([f1.mean(1, keepdim=True), f1.amax(1, keepdim=True)], 1)
    return f1 * torch.sigmoid(cbam.spatial.conv(pooled))


def test_max_pool_gradients_equal_amax_ones_without_ties():
    """Training takes the max with ``max`` (cheaper backward), inference with ``amax``: same
    outputs, and the same gradients to the input and every parameter when no values tie."""
    torch.manual_seed(0)
    cbam = CBAM(32, reduction=8)
    x = feature_map().requires_grad_(True)
    out = cbam(x)
    grads = torch.autograd.grad(out.pow(2).sum(), [x, *cbam.parameters()])
    x_ref = x.detach().clone().requires_grad_(True)
    ref = _timm_style_cbam(cbam, x_ref)
    ref_grads = torch.autograd.grad(ref.pow(2).sum(), [x_ref, *cbam.parameters()])
    torch.testing.assert_close(out, ref)
    for g, g_ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, g_ref)
    with torch.no_grad():
        torch.testing.assert_close(cbam(x), out.detach())


@pytest.mark.parametrize("block", ["channel", "spatial"])
def test_a_tied_max_passes_its_whole_gradient_to_one_tied_position(block):
    """With ties (e.g. ReLU zeros), ``max`` gives the gradient to one tied position where
    ``amax`` spreads it: both are subgradients, so the sum over the tied positions agrees."""
    x = torch.zeros(1, 4, 2, 2, requires_grad=True)  # every value ties
    if block == "channel":
        pooled = vlkit_cbam._max_pool(x, (2, 3))
    else:
        pooled = vlkit_cbam._max_pool(x, 1)
    (pooled * 3.0).sum().backward()
    grad = x.grad
    tied_axes = (2, 3) if block == "channel" else (1,)
    assert ((grad != 0).sum(tied_axes) == 1).all()  # one position per max
    torch.testing.assert_close(grad.sum(tied_axes), torch.full_like(grad.sum(tied_axes), 3.0))


def test_forward_hooks_on_the_two_blocks_see_their_inputs_and_outputs():
    """Visualisations (scripts/show_cbam.py) hook ``.channel`` and ``.spatial``: both run as
    module calls, and the spatial block's input is the channel block's output, untouched."""
    torch.manual_seed(0)
    cbam = CBAM(32, reduction=8).eval()
    seen = {}
    for name in ("channel", "spatial"):
        getattr(cbam, name).register_forward_hook(
            lambda m, inputs, out, name=name: seen.update({name: (inputs[0].clone(), out)})
        )
    x = feature_map()
    with torch.no_grad():
        out = cbam(x)
    torch.testing.assert_close(seen["spatial"][0], seen["channel"][1])
    torch.testing.assert_close(seen["spatial"][1], out)
    torch.testing.assert_close(out, seen["spatial"][0] * cbam.spatial.attention_map(seen["spatial"][0]))


def test_a_bounded_gate_stays_between_the_identity_and_the_plain_block():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 5, 5)
    plain = CBAM(8, reduction=2)
    bounded = CBAM(8, reduction=2, gate="bounded")
    bounded.load_state_dict(plain.state_dict(), strict=False)
    torch.testing.assert_close(bounded(x), x, atol=0, rtol=0)  # g = 0: the identity
    with torch.no_grad():
        bounded.gate.fill_(-0.5)  # below 0: off, where the "zero" gate would amplify
    torch.testing.assert_close(bounded(x), x, atol=0, rtol=0)
    assert bounded.gate_value().item() == 0.0
    bounded(x).pow(2).sum().backward()
    assert bounded.gate.grad.abs() > 0  # the gradient passes the clamp: the block can come back
    with torch.no_grad():
        bounded.gate.fill_(3.0)  # above 1: the plain block
    torch.testing.assert_close(bounded(x), plain(x), atol=1e-6, rtol=0)
    with torch.no_grad():
        bounded.gate.fill_(0.25)  # inside: the zero gate's value, unchanged
    gated = CBAM(8, reduction=2, gate="zero")
    gated.load_state_dict(bounded.state_dict())
    torch.testing.assert_close(bounded(x), gated(x), atol=0, rtol=0)
    with pytest.raises(ValueError, match="has no gate"):
        plain.gate_value()
