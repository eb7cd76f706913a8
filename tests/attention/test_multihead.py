"""Tests for vlkit.attention.multihead.MultiHeadAttention.

Contract (docs/mechanisms.md#multi-head-attention): ``W_o [head_1; …; head_h]`` with scaled-dot
heads of width ``d / h``; the fused path (``need_weights=False``, SDPA) and the explicit
path (``need_weights=True``) give the same output; one class serves self- and
cross-attention; all-masked query rows give a zero context (output = out_proj.bias), never NaN.
"""

from __future__ import annotations

import math

import pytest
import torch

from vlkit.attention import MultiHeadAttention, MultiHeadAttentionOutput
from vlkit.testing import torch_mha_like

B, M, N, DIM, HEADS, DIM_CTX = 2, 4, 6, 8, 2, 5
ATOL = 1e-5


def both_paths(mha, x, **kwargs):
    fused = mha(x, need_weights=False, **kwargs)
    explicit = mha(x, need_weights=True, **kwargs)
    return fused, explicit


def assert_paths_agree(fused, explicit):
    assert fused.weights is None
    assert explicit.weights is not None
    assert not torch.isnan(fused.output).any()
    assert not torch.isnan(explicit.output).any()
    torch.testing.assert_close(fused.output, explicit.output, atol=ATOL, rtol=1e-5)


@pytest.fixture
def self_attn():
    torch.manual_seed(0)
    return MultiHeadAttention(DIM, HEADS).eval()


@pytest.fixture
def cross_attn():
    torch.manual_seed(0)
    return MultiHeadAttention(DIM, HEADS, dim_context=DIM_CTX).eval()


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, M, DIM, generator=g)
    context = torch.randn(B, N, DIM_CTX, generator=g)
    return x, context


def cross_attention_with_grad_inputs():
    """A seeded cross-attention layer and inputs that require gradients."""
    torch.manual_seed(0)
    mha = MultiHeadAttention(DIM, HEADS, dim_context=DIM_CTX)
    x, context = inputs()
    return mha, x.requires_grad_(True), context.requires_grad_(True)


def key_padding(n):
    mask = torch.ones(B, n, dtype=torch.bool)
    mask[1, n - 2 :] = False  # batch 1: last two positions are padding
    return mask


# --------------------------------------------------------------------------- fused == explicit
def test_paths_agree_self_attention(self_attn):
    x, _ = inputs()
    assert_paths_agree(*both_paths(self_attn, x))


def test_paths_agree_cross_attention(cross_attn):
    x, context = inputs()
    fused, explicit = both_paths(cross_attn, x, context=context)
    assert fused.output.shape == (B, M, DIM)
    assert explicit.weights.shape == (B, HEADS, M, N)
    assert_paths_agree(fused, explicit)


def test_paths_agree_with_padding_mask(self_attn, cross_attn):
    x, context = inputs()
    assert_paths_agree(*both_paths(self_attn, x, mask=key_padding(M)))
    assert_paths_agree(*both_paths(cross_attn, x, context=context, mask=key_padding(N)))


def test_paths_agree_with_query_key_mask(cross_attn):
    x, context = inputs()
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(B, M, N, generator=g) > 0.4
    mask[..., 0] = True  # every row keeps at least one key
    fused, explicit = both_paths(cross_attn, x, context=context, mask=mask)
    assert_paths_agree(fused, explicit)
    assert (explicit.weights[~mask[:, None].expand(B, HEADS, M, N)] == 0).all()


def test_paths_agree_causal(self_attn):
    x, _ = inputs()
    fused, explicit = both_paths(self_attn, x, causal=True)
    assert_paths_agree(fused, explicit)
    future = torch.ones(M, M, dtype=torch.bool).triu(1)  # j > i
    assert (explicit.weights[..., future] == 0).all()
    # causal and padding combined
    assert_paths_agree(*both_paths(self_attn, x, causal=True, mask=key_padding(M)))


def test_causal_output_ignores_the_future(self_attn):
    x, _ = inputs()
    out = self_attn(x, causal=True).output
    x2 = x.clone()
    x2[:, -1] = 100.0  # change only the last position
    out2 = self_attn(x2, causal=True).output
    torch.testing.assert_close(out2[:, :-1], out[:, :-1])


def test_all_masked_row_is_zero_context_in_both_paths(cross_attn):
    x, context = inputs()
    mask = torch.ones(B, M, N, dtype=torch.bool)
    mask[0, 1] = False  # query row (0, 1) may attend nowhere
    mask[1, :, 3:] = False
    fused, explicit = both_paths(cross_attn, x, context=context, mask=mask)
    assert_paths_agree(fused, explicit)
    bias = cross_attn.out_proj.bias.detach()
    torch.testing.assert_close(fused.output[0, 1], bias)
    torch.testing.assert_close(explicit.output[0, 1], bias)
    assert (explicit.weights[0, :, 1] == 0).all()
    # the other rows are untouched: they match a run without the fully masked row
    mask_ok = mask.clone()
    mask_ok[0, 1] = True
    ok = cross_attn(x, context=context, mask=mask_ok).output
    torch.testing.assert_close(fused.output[0, [0, 2, 3]], ok[0, [0, 2, 3]])
    torch.testing.assert_close(fused.output[1], ok[1])


@pytest.mark.parametrize("grad", [False, True])
def test_fully_padded_sequence_is_zero_context_in_both_paths(cross_attn, grad):
    """A (b, n) key-padding mask whose sequence 1 keeps no key: every query row of that sequence
    gets out_proj.bias, with and without autograd (the fused path zeroes after merging heads)."""
    x, context = inputs()
    mask = key_padding(N)
    mask[1] = False
    with torch.set_grad_enabled(grad):
        fused, explicit = both_paths(cross_attn, x, context=context, mask=mask)
    assert_paths_agree(fused, explicit)
    bias = cross_attn.out_proj.bias.detach().expand(M, DIM)
    torch.testing.assert_close(fused.output[1].detach(), bias)
    # sequence 0 is untouched by sequence 1's padding
    alone = cross_attn(x[:1], context=context[:1], mask=mask[:1]).output
    torch.testing.assert_close(fused.output[0].detach(), alone[0].detach(), atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("need_weights", [False, True])
def test_all_masked_row_has_finite_gradients(need_weights):
    mha, x, context = cross_attention_with_grad_inputs()
    mask = torch.ones(B, M, N, dtype=torch.bool)
    mask[0, 1] = False
    out = mha(x, context=context, mask=mask, need_weights=need_weights).output
    out.pow(2).sum().backward()
    for name, p in mha.named_parameters():
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    assert torch.isfinite(x.grad).all() and torch.isfinite(context.grad).all()
    # the fully masked query row only reaches the output through out_proj.bias
    assert (x.grad[0, 1] == 0).all()


def test_all_masked_row_under_bf16_autocast(cross_attn):
    x, context = inputs()
    mask = torch.ones(B, M, N, dtype=torch.bool)
    mask[1, 2] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, explicit = both_paths(cross_attn, x, context=context, mask=mask)
    for out in (fused.output, explicit.output):
        assert not torch.isnan(out).any()
        torch.testing.assert_close(out[1, 2].float(), cross_attn.out_proj.bias.detach(), atol=1e-2, rtol=0)
    torch.testing.assert_close(fused.output.float(), explicit.output.float(), atol=5e-2, rtol=0)


# --------------------------------------------------------------------------- vs torch
# torch.nn.MultiheadAttention with the layer's weights: vlkit.testing.torch_mha_like


def test_matches_torch_self_attention_with_padding(self_attn):
    ref = torch_mha_like(self_attn).eval()
    x, _ = inputs()
    mask = key_padding(M)
    ref_out, ref_w = ref(x, x, x, key_padding_mask=~mask, need_weights=True, average_attn_weights=False)
    fused, explicit = both_paths(self_attn, x, mask=mask)
    torch.testing.assert_close(fused.output, ref_out, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(explicit.output, ref_out, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(explicit.weights, ref_w, atol=ATOL, rtol=1e-5)


def test_matches_torch_cross_attention(cross_attn):
    ref = torch_mha_like(cross_attn).eval()
    x, context = inputs()
    mask = key_padding(N)
    ref_out, ref_w = ref(
        x, context, context, key_padding_mask=~mask, need_weights=True, average_attn_weights=False
    )
    fused, explicit = both_paths(cross_attn, x, context=context, mask=mask)
    torch.testing.assert_close(fused.output, ref_out, atol=ATOL, rtol=1e-5)
    torch.testing.assert_close(explicit.weights, ref_w, atol=ATOL, rtol=1e-5)


def test_matches_torch_with_query_key_mask_and_causal(self_attn):
    ref = torch_mha_like(self_attn).eval()
    x, _ = inputs()
    g = torch.Generator().manual_seed(7)
    mask = torch.rand(B, M, M, generator=g) > 0.3
    mask[..., 0] = True
    # torch: 3-D attn_mask is (b * h, m, n) with True = NOT allowed
    ref_out, _ = ref(x, x, x, attn_mask=(~mask).repeat_interleave(HEADS, dim=0))
    for need_weights in (False, True):
        out = self_attn(x, mask=mask, need_weights=need_weights).output
        torch.testing.assert_close(out, ref_out, atol=ATOL, rtol=1e-5)
    causal = torch.ones(M, M, dtype=torch.bool).triu(1)
    ref_causal, _ = ref(x, x, x, attn_mask=causal)
    for need_weights in (False, True):
        out = self_attn(x, causal=True, need_weights=need_weights).output
        torch.testing.assert_close(out, ref_causal, atol=ATOL, rtol=1e-5)


# --------------------------------------------------------------------------- identities
def test_weights_shape_and_rows_sum_to_one(cross_attn):
    x, context = inputs()
    out = cross_attn(x, context=context, mask=key_padding(N), need_weights=True)
    assert isinstance(out, MultiHeadAttentionOutput)
    assert out.output.shape == (B, M, DIM)
    assert out.weights.shape == (B, HEADS, M, N)
    assert (out.weights >= 0).all()
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(B, HEADS, M))
    assert (out.weights[1, ..., N - 2 :] == 0).all()


def test_self_attention_is_permutation_equivariant(self_attn):
    x, _ = inputs()
    mask = key_padding(M)
    perm = torch.tensor([2, 0, 3, 1])
    for need_weights in (False, True):
        out = self_attn(x, mask=mask, need_weights=need_weights).output
        out_perm = self_attn(x[:, perm], mask=mask[:, perm], need_weights=need_weights).output
        torch.testing.assert_close(out_perm, out[:, perm], atol=ATOL, rtol=1e-5)


def test_cross_attention_with_context_x_equals_self_attention(self_attn):
    x, _ = inputs()
    mask = key_padding(M)
    for need_weights in (False, True):
        torch.testing.assert_close(
            self_attn(x, context=x, mask=mask, need_weights=need_weights).output,
            self_attn(x, mask=mask, need_weights=need_weights).output,
        )


def test_padding_invariance(cross_attn):
    x, context = inputs()
    mask = key_padding(N)
    ref = cross_attn(x, context=context, mask=mask).output
    garbage = context.clone()
    garbage[1, N - 2 :] = 1e3
    torch.testing.assert_close(cross_attn(x, context=garbage, mask=mask).output, ref)
    longer = torch.cat([context, 1e3 * torch.ones(B, 3, DIM_CTX)], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(B, 3, dtype=torch.bool)], dim=1)
    for need_weights in (False, True):
        out = cross_attn(x, context=longer, mask=longer_mask, need_weights=need_weights).output
        torch.testing.assert_close(out, ref, atol=ATOL, rtol=1e-5)


def test_single_head_hand_value():
    # one head, identity projections and zero biases: output = softmax(x xᵀ / √d) x
    mha = MultiHeadAttention(2, num_heads=1)
    with torch.no_grad():
        for lin in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    # scores = x xᵀ / √2 = [[1/√2, 0], [0, 1/√2]]; a = e^{1/√2}: row 0 weights [a, 1] / (a + 1)
    # row 1 weights [1, a] / (a + 1); v = x = I, so the output rows are the weight rows
    a = math.exp(2**-0.5)
    expected = torch.tensor([[a, 1.0], [1.0, a]]) / (a + 1)
    for need_weights in (False, True):
        out = mha(x, need_weights=need_weights).output
        torch.testing.assert_close(out[0], expected)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("dim, heads", [(10, 3), (8, 0)])
def test_dim_not_divisible_raises(dim, heads):
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(dim, heads)


@pytest.mark.parametrize("need_weights", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.long])
def test_non_bool_mask_raises_type_error(self_attn, need_weights, dtype):
    x, _ = inputs()
    with pytest.raises(TypeError, match="bool"):
        self_attn(x, mask=torch.ones(B, M, dtype=dtype), need_weights=need_weights)


@pytest.mark.parametrize("need_weights", [False, True])
def test_bad_mask_or_input_shape_raises_value_error(self_attn, need_weights):
    x, _ = inputs()
    with pytest.raises(ValueError):
        self_attn(x, mask=torch.ones(B, M + 1, dtype=torch.bool), need_weights=need_weights)  # wrong n
    with pytest.raises(ValueError):
        self_attn(x, mask=torch.ones(B + 1, M, dtype=torch.bool), need_weights=need_weights)  # wrong b
    with pytest.raises(ValueError):
        self_attn(x[0], need_weights=need_weights)  # not 3-D
    with pytest.raises(ValueError):
        self_attn(x, context=torch.randn(B + 1, N, DIM), need_weights=need_weights)  # batch differs


@pytest.mark.parametrize("need_weights", [False, True])
def test_query_key_mask_with_wrong_m_raises_value_error(self_attn, need_weights):
    x, _ = inputs()
    with pytest.raises(ValueError):
        self_attn(x, mask=torch.ones(B, M + 1, M, dtype=torch.bool), need_weights=need_weights)


def test_wrong_input_width_raises_value_error(self_attn):
    with pytest.raises(ValueError):
        self_attn(torch.randn(B, M, DIM - 2))
    with pytest.raises(ValueError):
        self_attn(torch.randn(B, M, DIM), context=torch.randn(B, N, DIM + 2))


# --------------------------------------------------------------------------- training behaviour
@pytest.mark.parametrize("need_weights", [False, True])
def test_gradients_reach_every_parameter(need_weights):
    mha, x, context = cross_attention_with_grad_inputs()
    mha(x, context=context, mask=key_padding(N), need_weights=need_weights).output.pow(2).sum().backward()
    names = {name for name, _ in mha.named_parameters()}
    assert {"q_proj.weight", "q_proj.bias", "k_proj.weight", "v_proj.weight", "out_proj.weight"} <= names
    for name, p in mha.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        if name == "k_proj.bias":
            # a bias added to every key shifts all scores of a row equally: softmax-invariant
            continue
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
    assert x.grad.abs().sum() > 0 and context.grad.abs().sum() > 0


def test_eval_mode_is_deterministic():
    torch.manual_seed(0)
    mha = MultiHeadAttention(DIM, HEADS, attn_drop=0.5, proj_drop=0.5)
    x, _ = inputs()
    mha.eval()
    for need_weights in (False, True):
        first = mha(x, mask=key_padding(M), need_weights=need_weights).output
        second = mha(x, mask=key_padding(M), need_weights=need_weights).output
        assert torch.equal(first, second)
    # dropout is off in eval: same result as a dropout-free copy with the same weights
    plain = MultiHeadAttention(DIM, HEADS).eval()
    plain.load_state_dict(mha.state_dict())
    torch.testing.assert_close(mha(x).output, plain(x).output)
    # and on in training
    mha.train()
    torch.manual_seed(1)
    a = mha(x).output
    torch.manual_seed(2)
    b = mha(x).output
    assert not torch.allclose(a, b)
