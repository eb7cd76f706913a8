"""Tests for vlkit.attention.alignment: global, local-m and local-p (Luong et al. 2015)."""

from __future__ import annotations

import math

import pytest
import torch

from vlkit.attention import (
    ALIGNMENTS,
    AdditiveAttention,
    Attention,
    ConcatAttention,
    DotProductAttention,
    DotProductScore,
    GeneralAttention,
    GlobalAlignment,
    HardAttention,
    LocalMonotonicAlignment,
    LocalPredictiveAlignment,
    LuongAttention,
    MultiHeadAttention,
    NadarayaWatsonAttention,
    ScaledDotProductAttention,
    create_alignment,
    masked_softmax,
)


def scores_and_mask(b=2, m=4, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, m, n, generator=g)
    mask = torch.ones(b, 1, n, dtype=torch.bool)
    mask[1, 0, 4:] = False
    return scores, mask


def test_global_is_masked_softmax():
    scores, mask = scores_and_mask()
    torch.testing.assert_close(GlobalAlignment()(scores, mask), masked_softmax(scores, mask))


def test_local_m_hand_case_is_softmax_inside_the_window():
    scores = torch.tensor([[[0.0, 1.0, 2.0, 3.0, 4.0]] * 5])  # (1, 5, 5): query t looks around s = t
    weights = LocalMonotonicAlignment(window=1)(scores)
    # query 2 sees positions 1..3 only
    expected = torch.zeros(5)
    expected[1:4] = torch.softmax(torch.tensor([1.0, 2.0, 3.0]), 0)
    torch.testing.assert_close(weights[0, 2], expected)
    # query 0 sees positions 0..1 (the window is clipped at the start)
    torch.testing.assert_close(weights[0, 0, :2], torch.softmax(torch.tensor([0.0, 1.0]), 0))
    assert torch.all(weights[0, 0, 2:] == 0)


def test_local_m_window_zero_is_the_identity_alignment():
    scores, _ = scores_and_mask(m=6, n=6)
    weights = LocalMonotonicAlignment(window=0)(scores)
    torch.testing.assert_close(weights, torch.eye(6).expand(2, 6, 6))


def test_local_m_with_gaussian_multiplies_by_the_gaussian():
    scores, mask = scores_and_mask()
    plain = LocalMonotonicAlignment(window=2)(scores, mask)
    weighted = LocalMonotonicAlignment(window=2, gaussian=True)(scores, mask)
    s = torch.arange(6.0)
    t = torch.arange(4.0)
    gauss = torch.exp(-((s[None, :] - t[:, None]) ** 2) / (2 * 1.0**2))  # σ = D/2 = 1
    torch.testing.assert_close(weighted, plain * gauss)


def test_local_m_query_positions_for_one_decoder_step():
    scores = torch.randn(2, 1, 8)  # one target step at a time
    positions = torch.tensor([[5], [1]])  # (b, m): step t = 5 and t = 1
    weights = LocalMonotonicAlignment(window=1)(scores, None, None, positions)
    assert torch.all(weights[0, 0, :4] == 0) and torch.all(weights[0, 0, 7:] == 0)
    assert torch.all(weights[1, 0, 3:] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 1))


def test_local_m_empty_window_gives_zero_row():
    scores = torch.randn(1, 3, 3)
    mask = torch.tensor([[[True, False, False]]])
    weights = LocalMonotonicAlignment(window=0)(scores, mask)  # queries 1 and 2 only see padding
    torch.testing.assert_close(weights[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.all(weights[0, 1:] == 0) and not torch.isnan(weights).any()


def local_p(query_dim=3, window=2):
    layer = LocalPredictiveAlignment(query_dim, window)
    with torch.no_grad():
        layer.position_score.weight.zero_()  # sigmoid(0) = 1/2: p_t = S / 2
    return layer


def test_local_p_hand_case():
    scores, mask = scores_and_mask(m=1, n=6)
    query = torch.randn(2, 1, 3)
    layer = local_p(window=2)
    weights = layer(scores, mask, query)
    for row, source_len in ((0, 6), (1, 4)):  # row 1 has 4 kept keys
        centre = source_len / 2
        s = torch.arange(6.0)
        window = (s - centre).abs() <= 2
        keep = window & mask[row, 0]
        expected = torch.zeros(6)
        expected[keep] = torch.softmax(scores[row, 0][keep], 0)
        expected = expected * torch.exp(-((s - centre) ** 2) / (2 * 1.0**2))
        torch.testing.assert_close(weights[row, 0], expected)
    torch.testing.assert_close(layer.last_positions, torch.tensor([[3.0], [2.0]]))


def test_local_p_rows_sum_to_at_most_one():
    scores, mask = scores_and_mask()
    weights = LocalPredictiveAlignment(3, window=2)(scores, mask, torch.randn(2, 4, 3))
    assert torch.all(weights >= 0) and torch.all(weights.sum(-1) <= 1 + 1e-6)
    assert torch.all(weights[1, :, 4:] == 0)


def test_local_p_position_predictor_gets_gradients():
    scores, mask = scores_and_mask()
    layer = LocalPredictiveAlignment(3, window=2)
    layer(scores, mask, torch.randn(2, 4, 3)).pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_local_p_wide_window_matches_global():
    scores, mask = scores_and_mask()
    weights = LocalPredictiveAlignment(3, window=10_000)(scores, mask, torch.randn(2, 4, 3))
    torch.testing.assert_close(weights, masked_softmax(scores, mask), atol=1e-5, rtol=0)


def test_local_p_with_head_axis():
    scores = torch.randn(2, 3, 4, 6)  # (b, h, m, n)
    mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    layer = local_p(window=1)
    weights = layer(scores, mask, torch.randn(2, 4, 3))
    assert weights.shape == scores.shape
    # every head uses the same window: position 3 = S/2 ± 1
    assert torch.all(weights[..., :2] == 0) and torch.all(weights[..., 5:] == 0)


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: LocalMonotonicAlignment(-1), ValueError),
        (lambda: LocalPredictiveAlignment(3, 0), ValueError),
        (lambda: local_p()(torch.randn(2, 4, 6)), ValueError),  # no query
        (lambda: local_p()(torch.randn(2, 4, 6), None, torch.randn(2, 3, 3)), ValueError),  # wrong m
        (lambda: LocalMonotonicAlignment(1)(torch.randn(2, 4, 6), None, None, torch.arange(3)), ValueError),
        (lambda: LocalMonotonicAlignment(1)(torch.randn(2, 4, 6), torch.ones(2, 1, 6)), TypeError),
        (lambda: LocalMonotonicAlignment(1)(torch.randn(2, 4, 6), torch.ones(2, 1, 5).bool()), ValueError),
        (lambda: create_alignment("local"), ValueError),
        (lambda: create_alignment("local_m"), ValueError),
        (lambda: create_alignment("local_p", window=2), ValueError),
    ],
)
def test_errors(call, error):
    with pytest.raises(error):
        call()


def test_unknown_alignment_lists_the_valid_names():
    with pytest.raises(ValueError) as info:
        create_alignment("nearby")
    for name in ALIGNMENTS:
        assert name in str(info.value)


@pytest.mark.parametrize(
    "name, kwargs, cls",
    [
        ("global", {}, GlobalAlignment),
        ("local_m", {"window": 3}, LocalMonotonicAlignment),
        ("local_p", {"window": 3, "query_dim": 8}, LocalPredictiveAlignment),
    ],
)
def test_create_alignment(name, kwargs, cls):
    assert type(create_alignment(name, **kwargs)) is cls


D = 6
# every attention module takes an alignment; with local-m, window 0, self-attention is the identity
MODULES = [
    ("attention", lambda a: Attention(DotProductScore(), alignment=a)),
    ("dot", lambda a: DotProductAttention(alignment=a)),
    ("scaled_dot", lambda a: ScaledDotProductAttention(alignment=a)),
    ("general", lambda a: GeneralAttention(D, alignment=a)),
    ("additive", lambda a: AdditiveAttention(D, D, 4, alignment=a)),
    ("concat", lambda a: ConcatAttention(D, D, 4, alignment=a)),
    ("nadaraya_watson", lambda a: NadarayaWatsonAttention(alignment=a)),
    ("hard", lambda a: HardAttention(DotProductScore(), alignment=a).eval()),
]


@pytest.mark.parametrize("make", [m[1] for m in MODULES], ids=[m[0] for m in MODULES])
def test_every_attention_module_takes_a_local_alignment(make):
    x = torch.randn(2, 5, D)
    out = make(LocalMonotonicAlignment(0))(x, x, x)
    torch.testing.assert_close(out.weights, torch.eye(5).expand(2, 5, 5))
    torch.testing.assert_close(out.context, x)


def test_luong_and_multi_head_take_a_local_alignment():
    x = torch.randn(2, 5, D)
    luong = LuongAttention(D, score="dot", alignment=LocalMonotonicAlignment(0))
    torch.testing.assert_close(luong(x, x).context, x)
    mha = MultiHeadAttention(D, 2, alignment=LocalMonotonicAlignment(0))
    out = mha(x, need_weights=True)
    torch.testing.assert_close(out.weights, torch.eye(5).expand(2, 2, 5, 5))
    v = mha.v_proj(x)
    torch.testing.assert_close(out.output, mha.out_proj(v))  # each token reads only its own value
    # the weights are not requested, but the local alignment still applies (explicit path)
    torch.testing.assert_close(mha(x).output, out.output)


def test_multi_head_with_local_p_uses_the_queries():
    x = torch.randn(2, 5, D)
    mha = MultiHeadAttention(D, 2, alignment=LocalPredictiveAlignment(D, window=1))
    out = mha(x, need_weights=True)
    centres = mha.alignment.last_positions  # (b, m)
    s = torch.arange(5.0)
    outside = (s[None, None, :] - centres[..., None]).abs() > 1  # (b, m, n)
    assert torch.all(out.weights.masked_select(outside[:, None].expand_as(out.weights)) == 0)
    out.output.sum().backward()
    assert mha.alignment.position_proj.weight.grad.abs().sum() > 0


def test_sigma_is_half_the_window():
    # exp(-(s - p)^2 / (2 σ²)) with σ = D/2: at distance D the factor is exp(-2)
    scores = torch.zeros(1, 1, 9)
    weights = LocalMonotonicAlignment(window=4, gaussian=True)(scores, None, None, torch.tensor([4]))
    inside = 9  # all positions 0..8 are within |s - 4| <= 4
    assert weights[0, 0, 0].item() == pytest.approx(math.exp(-2.0) / inside, rel=1e-5)
