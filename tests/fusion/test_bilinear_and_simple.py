"""MFB / MFH, gated fusion and the joint-embedding baselines (docs/mechanisms.md, sections "MFB and
MFH", "Gated fusion" and "Joint embeddings"), with values worked out by hand under fixed weights and
the identities that define each layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vlkit.fusion import MFB, MFH, GatedFusion, JointEmbedding, MFBCoAttention, signed_sqrt
from vlkit.testing import PlainMFB

# U = V: rows e1, e2, e1, e2, so Uᵀx = [x1, x2, x1, x2]
EYE_TWICE = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])


def set_linear(linear: nn.Linear, weight, bias=0.0):
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        linear.bias.fill_(bias)


def test_mfb_hand_computed_value():
    mfb = MFB(2, 2, output_dim=2, factor=2, dropout=0.0)
    set_linear(mfb.x_proj, EYE_TWICE)
    set_linear(mfb.y_proj, EYE_TWICE)
    x, y = torch.tensor([[2.0, 3.0]]), torch.tensor([[1.0, -1.0]])
    out = mfb(x, y)
    # Uᵀx ⊙ Vᵀy = [2, −3, 2, −3]; SumPool over k = 2: [−1, −1]; signed sqrt: [−1, −1]; L2: −1/√2 each
    torch.testing.assert_close(out.expanded, torch.tensor([[2.0, -3.0, 2.0, -3.0]]))
    torch.testing.assert_close(out.output, torch.full((1, 2), -1 / math.sqrt(2)))


def test_mfh_hand_computed_value():
    mfh = MFH(2, 2, output_dim=2, factor=2, order=2, dropout=0.0)
    for block in mfh.blocks:
        set_linear(block.x_proj, EYE_TWICE)
        set_linear(block.y_proj, EYE_TWICE)
    out = mfh(torch.tensor([[2.0, 3.0]]), torch.tensor([[1.0, -1.0]]))
    # block 1 as MFB: [−1/√2, −1/√2]; block 2: e = [2, −3, 2, −3] ⊙ [2, −3, 2, −3] = [4, 9, 4, 9],
    # SumPool [13, 13], signed sqrt [√13, √13], L2 → [1/√2, 1/√2]
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(out, torch.tensor([[-r, -r, r, r]]))


def test_mfb_output_is_l2_normalised_and_power_normalised():
    torch.manual_seed(0)
    mfb = MFB(5, 7, output_dim=6, factor=4, dropout=0.0)
    x, y = torch.randn(3, 5), torch.randn(3, 7)
    out = mfb(x, y)
    torch.testing.assert_close(out.output.norm(dim=-1), torch.ones(3))
    # the equation evaluated plainly: pooled z, then sign(z)·sqrt(|z|) / ‖·‖
    torch.testing.assert_close(out.output, PlainMFB(mfb)(x, y), atol=1e-5, rtol=0)


def test_mfb_gradients_match_torch_normalize_of_the_signed_sqrt():
    """MFB divides by the (..., 1) norm itself and takes sign(z) without gradient: the
    gradients equal those of ``F.normalize(sign(z)·sqrt(|z| + eps))`` written with torch ops."""
    torch.manual_seed(4)
    mfb = MFB(5, 7, output_dim=6, factor=4, dropout=0.0)
    x, y = torch.randn(3, 5, requires_grad=True), torch.randn(3, 7, requires_grad=True)
    weights = torch.randn(3, 6)
    grads = torch.autograd.grad((mfb(x, y).output * weights).sum(), [x, y, *mfb.parameters()])
    z = (mfb.x_proj(x) * mfb.y_proj(y)).unflatten(-1, (6, 4)).sum(-1)
    expected = torch.nn.functional.normalize(torch.sign(z) * torch.sqrt(z.abs() + 1e-12), dim=-1)
    expected_grads = torch.autograd.grad((expected * weights).sum(), [x, y, *mfb.parameters()])
    for g, g_ref in zip(grads, expected_grads):
        torch.testing.assert_close(g, g_ref)


def test_mfh_slices_are_each_normalised_and_order_one_is_mfb():
    torch.manual_seed(1)
    mfh = MFH(4, 3, output_dim=5, factor=2, order=3, dropout=0.0)
    out = mfh(torch.randn(2, 4), torch.randn(2, 3))
    assert out.shape == (2, 15) and mfh.output_dim == 15
    torch.testing.assert_close(out.unflatten(-1, (3, 5)).norm(dim=-1), torch.ones(2, 3))
    torch.manual_seed(2)
    single = MFH(4, 3, output_dim=5, factor=2, order=1, dropout=0.0)
    x, y = torch.randn(2, 4), torch.randn(2, 3)
    torch.testing.assert_close(single(x, y), single.blocks[0](x, y).output)


def test_mfb_broadcasts_regions_against_one_question():
    torch.manual_seed(3)
    mfb = MFB(4, 3, output_dim=5, factor=2, dropout=0.0)
    regions, question = torch.randn(2, 6, 4), torch.randn(2, 3)
    out = mfb(regions, question[:, None, :]).output
    assert out.shape == (2, 6, 5)
    torch.testing.assert_close(out[:, 2], mfb(regions[:, 2], question).output)


def test_signed_sqrt_and_its_gradient_at_zero():
    z = torch.tensor([-4.0, 0.0, 9.0], requires_grad=True)
    out = signed_sqrt(z)
    torch.testing.assert_close(out, torch.tensor([-2.0, 0.0, 3.0]), atol=1e-6, rtol=0)
    out.sum().backward()
    assert torch.isfinite(z.grad).all()
    torch.testing.assert_close(z.grad, torch.tensor([0.25, 0.0, 1 / 6]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kwargs", [{"output_dim": 0}, {"factor": 0}])
def test_mfb_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError, match="output_dim and factor"):
        MFB(2, 2, **kwargs)


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan")])
def test_mfb_rejects_an_output_scale_that_is_not_positive(scale):
    with pytest.raises(ValueError, match="output_scale must be > 0"):
        MFB(2, 2, output_scale=scale)


def test_output_scale_multiplies_every_normalised_block_and_the_attention_inputs():
    torch.manual_seed(5)
    plain = MFBCoAttention(6, 5, hidden_dim=4, factor=3, order=2, attention_dim=8, dropout=0.0).eval()
    scaled = MFBCoAttention(
        6, 5, hidden_dim=4, factor=3, order=2, attention_dim=8, dropout=0.0, output_scale=2.0
    ).eval()
    scaled.load_state_dict(plain.state_dict())  # no parameter of its own: the same weights
    image, text = torch.randn(2, 7, 6), torch.randn(2, 3, 5)
    out, out_scaled = plain(image, None, text, None), scaled(image, None, text, None)
    q_hat = out.text[:, None, :]
    torch.testing.assert_close(scaled.region_pooling(image, q_hat), 2.0 * plain.region_pooling(image, q_hat))
    torch.testing.assert_close(out_scaled.fused, 2.0 * plain.pooling(out_scaled.image, out_scaled.text))
    torch.testing.assert_close(out_scaled.fused.unflatten(-1, (2, 4)).norm(dim=-1), torch.full((2, 2), 2.0))


def test_mfh_rejects_order_zero():
    with pytest.raises(ValueError, match="order"):
        MFH(2, 2, order=0)


def test_mfb_coattention_is_the_composition_of_its_parts():
    torch.manual_seed(4)
    layer = MFBCoAttention(
        6, 5, hidden_dim=4, factor=3, order=2, image_glimpses=2, text_glimpses=2, attention_dim=8, dropout=0.0
    ).eval()
    image, text = torch.randn(2, 7, 6), torch.randn(2, 3, 5)
    text_mask = torch.tensor([[True, True, False], [True, True, True]])
    out = layer(image, None, text, text_mask)
    q_hat, text_weights = layer.text_attention(text, text_mask)
    scores = layer.region_pooling(image, q_hat[:, None, :])
    v_hat, image_weights = layer.image_attention(image, None, scores_from=scores)
    torch.testing.assert_close(out.text, q_hat)
    torch.testing.assert_close(out.image, v_hat)
    torch.testing.assert_close(out.fused, layer.pooling(v_hat, q_hat))
    assert out.fused.shape == (2, 8) and out.image.shape == (2, 12) and out.text.shape == (2, 10)
    torch.testing.assert_close(out.maps["image_glimpses"], image_weights)
    torch.testing.assert_close(out.text_weights, text_weights.mean(1))
    # each glimpse's q̂ slice is the weighted sum of the tokens
    torch.testing.assert_close(out.text[:, 5:], torch.einsum("bl,bld->bd", text_weights[:, 1], text))


# --------------------------------------------------------------------------------------
# gated fusion and joint embedding
# --------------------------------------------------------------------------------------
def identity_projections(layer, dim):
    set_linear(layer.image_proj, torch.eye(dim))
    set_linear(layer.text_proj, torch.eye(dim))


IMAGE = torch.tensor([[[0.2, -0.4], [0.6, 0.0], [9.0, 9.0]]])  # 3rd region masked
TEXT = torch.tensor([[[0.5, 0.1], [-7.0, 7.0]]])  # 2nd token masked
IMAGE_MASK, TEXT_MASK = torch.tensor([[True, True, False]]), torch.tensor([[True, False]])
X = torch.tanh(torch.tensor([[0.4, -0.2]]))  # tanh(mean of the kept regions)
Y = torch.tanh(torch.tensor([[0.5, 0.1]]))


def test_gated_fusion_hand_computed_value():
    layer = GatedFusion(2, 2, hidden_dim=2)
    identity_projections(layer, 2)
    set_linear(layer.gate, torch.zeros(2, 4), bias=0.0)  # g = σ(0) = 1/2
    out = layer(IMAGE, IMAGE_MASK, TEXT, TEXT_MASK)
    torch.testing.assert_close(out.maps["gate"], torch.full((1, 2), 0.5))
    torch.testing.assert_close(out.fused, 0.5 * X + 0.5 * Y)
    torch.testing.assert_close(out.image, X)
    torch.testing.assert_close(out.text, Y)


@pytest.mark.parametrize("bias, expected", [(30.0, X), (-30.0, Y)])
def test_gated_fusion_gate_selects_a_modality(bias, expected):
    layer = GatedFusion(2, 2, hidden_dim=2)
    identity_projections(layer, 2)
    set_linear(layer.gate, torch.zeros(2, 4), bias=bias)
    torch.testing.assert_close(layer(IMAGE, IMAGE_MASK, TEXT, TEXT_MASK).fused, expected)


def test_gated_fusion_is_a_convex_combination():
    torch.manual_seed(5)
    layer = GatedFusion(4, 3, hidden_dim=6)
    out = layer(torch.randn(5, 2, 4), None, torch.randn(5, 3, 3), None)
    low, high = torch.minimum(out.image, out.text), torch.maximum(out.image, out.text)
    assert ((out.fused >= low - 1e-6) & (out.fused <= high + 1e-6)).all()
    gate = out.maps["gate"]
    assert ((gate > 0) & (gate < 1)).all()


@pytest.mark.parametrize(
    "mode, expected",
    [("concat", torch.cat([X, Y], -1)), ("sum", X + Y), ("product", X * Y)],
)
def test_joint_embedding_hand_computed_values(mode, expected):
    layer = JointEmbedding(2, 2, hidden_dim=2, mode=mode)
    identity_projections(layer, 2)
    out = layer(IMAGE, IMAGE_MASK, TEXT, TEXT_MASK)
    torch.testing.assert_close(out.fused, expected)
    assert layer.output_dim == expected.shape[-1]


def test_joint_embedding_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown combine mode 'max'") as info:
        JointEmbedding(2, 2, mode="max")
    assert "concat" in str(info.value) and "product" in str(info.value)
