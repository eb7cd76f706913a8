"""Tests for vlkit.attention.seq2seq: Luong's attention layer and Bahdanau's decoder step."""

from __future__ import annotations

import pytest
import torch

from vlkit.attention import (
    AdditiveScore,
    BahdanauDecoderStep,
    DecoderStepOutput,
    HardAttention,
    LocalPredictiveAlignment,
    LuongAttention,
    LuongAttentionOutput,
    masked_softmax,
)


def source_and_mask(b=2, n=5, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, 3:] = False
    return torch.randn(b, n, d, generator=g), mask


@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_luong_output_is_tanh_of_wc_on_context_and_state(score):
    source, mask = source_and_mask()
    query = torch.randn(2, 3, 6)
    layer = LuongAttention(6, score=score, output_dim=7)
    out = layer(query, source, mask)
    assert isinstance(out, LuongAttentionOutput) and out.output.shape == (2, 3, 7)
    scores = layer.attention.score(query, source)
    weights = masked_softmax(scores, mask[:, None])
    torch.testing.assert_close(out.weights, weights)
    torch.testing.assert_close(out.context, weights @ source)
    w_c = layer.output_proj.weight  # (7, d_k + d_q)
    torch.testing.assert_close(out.output, torch.tanh(torch.cat([weights @ source, query], -1) @ w_c.T))


def test_luong_dot_score_hand_value():
    layer = LuongAttention(2, score="dot")
    with torch.no_grad():
        layer.output_proj.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    query = torch.tensor([[[1.0, 0.0]]])
    source = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])
    out = layer(query, source)
    a = torch.softmax(torch.tensor([2.0, 0.0]), 0)
    torch.testing.assert_close(out.weights[0, 0], a)
    torch.testing.assert_close(out.output[0, 0], torch.tanh(torch.tensor([2.0 * a[0], 0.0])))


def test_luong_padding_cannot_change_the_output():
    source, mask = source_and_mask()
    query = torch.randn(2, 3, 6)
    layer = LuongAttention(6, score="concat")
    a = layer(query, source, mask).output
    noisy = source.clone()
    noisy[1, 3:] = 100.0
    torch.testing.assert_close(layer(query, noisy, mask).output, a)


def test_luong_local_p_and_gradients_reach_every_parameter():
    _source, mask = source_and_mask()
    layer = LuongAttention(6, 4, score="general", alignment=LocalPredictiveAlignment(6, window=2))
    out = layer(torch.randn(2, 3, 6), torch.randn(2, 5, 4), mask)
    out.output.pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_luong_errors():
    with pytest.raises(ValueError, match="key_dim == query_dim"):
        LuongAttention(6, 4, score="dot")
    with pytest.raises(ValueError, match="valid names"):
        LuongAttention(6, score="bilinear")


def decoder(attention=None):
    torch.manual_seed(0)
    return BahdanauDecoderStep(input_dim=3, hidden_dim=8, encoder_dim=6, attention_dim=5, attention=attention)


def test_decoder_step_matches_the_equations():
    step = decoder()
    source, mask = source_and_mask()
    inputs = torch.randn(2, 3)
    state = (torch.randn(2, 8), torch.randn(2, 8))
    out = step(inputs, source, mask, state)
    assert isinstance(out, DecoderStepOutput)
    # α_t = softmax(w_vᵀ tanh(W_q s_{t-1} + W_k h_s)), c_t = Σ α h_s, s_t = LSTM([y; c], s_{t-1})
    score: AdditiveScore = step.attention.score
    alpha = masked_softmax(score(state[0][:, None], source)[:, 0], mask)
    torch.testing.assert_close(out.weights, alpha)
    torch.testing.assert_close(out.context, (alpha[:, :, None] * source).sum(1))
    h, c = step.cell(torch.cat([inputs, out.context], -1), state)
    torch.testing.assert_close(out.output, h)
    torch.testing.assert_close(out.state[1], c)
    assert torch.all(out.weights[1, 3:] == 0)


def test_decoder_initial_state_is_from_the_masked_mean():
    step = decoder()
    source, mask = source_and_mask()
    h0, c0 = step.init_state(source, mask)
    mean1 = source[1, :3].mean(0)
    torch.testing.assert_close(h0[1], torch.tanh(step.init_h(mean1)))
    torch.testing.assert_close(c0[1], torch.tanh(step.init_c(mean1)))
    assert step(torch.randn(2, 3), source, mask).state[0].shape == h0.shape == (2, 8)


def test_decoder_padding_cannot_change_the_outputs():
    step = decoder()
    source, mask = source_and_mask()
    inputs = torch.randn(2, 3)
    a = step(inputs, source, mask)
    noisy = source.clone()
    noisy[1, 3:] = 50.0
    b = step(inputs, noisy, mask)
    torch.testing.assert_close(a.output, b.output)
    torch.testing.assert_close(a.weights, b.weights)


def test_decoder_unrolled_gradients_reach_every_parameter():
    step = decoder()
    source, mask = source_and_mask()
    state, total = None, 0.0
    for _ in range(3):
        out = step(torch.randn(2, 3), source, mask, state)
        state, total = out.state, total + out.output.pow(2).sum()
    total.backward()
    for name, p in step.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_decoder_with_hard_attention_reads_one_region():
    step = decoder(HardAttention(AdditiveScore(8, 6, 5), estimator="gumbel"))
    source, mask = source_and_mask()
    out = step.eval()(torch.randn(2, 3), source, mask)
    index = out.weights.argmax(-1)
    torch.testing.assert_close(out.context, source[torch.arange(2), index])


@pytest.mark.parametrize(
    "inputs, source",
    [
        (torch.randn(2, 4), torch.randn(2, 5, 6)),  # wrong input width
        (torch.randn(2, 3), torch.randn(2, 5, 7)),  # wrong encoder width
        (torch.randn(3, 3), torch.randn(2, 5, 6)),  # batch mismatch
        (torch.randn(2, 1, 3), torch.randn(2, 5, 6)),  # not (b, e)
    ],
)
def test_decoder_shape_errors(inputs, source):
    with pytest.raises(ValueError):
        decoder()(inputs, source)


def test_decoder_non_bool_mask_raises_type_error():
    source, mask = source_and_mask()
    with pytest.raises(TypeError):
        decoder()(torch.randn(2, 3), source, mask.float())
