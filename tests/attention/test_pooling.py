"""Tests for vlkit.attention.pooling: ``f(q) = Σ_i softmax_i(a(q, k_i)) v_i``.

Every named subclass of :class:`Attention` is checked for shapes, weights summing to 1,
context = weights @ value, padding invariance (masked keys cannot change the output) and
gradients reaching every parameter.
"""

from __future__ import annotations

import math

import pytest
import torch

from vlkit.attention import (
    AdditiveAttention,
    Attention,
    AttentionOutput,
    ConcatAttention,
    DotProductAttention,
    GeneralAttention,
    NadarayaWatsonAttention,
    ScaledDotProductAttention,
)
from vlkit.attention.scoring import DotProductScore

B, M, N, D_V = 2, 3, 5, 7

# (id, factory(d_q, d_k), d_q, d_k): dot scores need equal widths, the others may differ
LAYERS = [
    ("dot", lambda dq, dk: DotProductAttention(), 6, 6),
    ("scaled_dot", lambda dq, dk: ScaledDotProductAttention(), 6, 6),
    ("general", lambda dq, dk: GeneralAttention(dq, dk), 4, 6),
    ("additive", lambda dq, dk: AdditiveAttention(dq, dk, hidden_dim=5), 4, 6),
    ("concat", lambda dq, dk: ConcatAttention(dq, dk, hidden_dim=5), 4, 6),
    ("nadaraya_watson", lambda dq, dk: NadarayaWatsonAttention(), 6, 6),
    ("nadaraya_watson_parametric", lambda dq, dk: NadarayaWatsonAttention(dq), 6, 6),
]
LAYER_IDS = [layer[0] for layer in LAYERS]
LAYER_PARAMS = [layer[1:] for layer in LAYERS]


def make_inputs(d_q, d_k, seed=0):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(B, M, d_q, generator=g)
    key = torch.randn(B, N, d_k, generator=g)
    value = torch.randn(B, N, D_V, generator=g)
    mask = torch.tensor([[True] * N, [True, True, True, False, False]])  # (b, n)
    return query, key, value, mask


@pytest.mark.parametrize("make, d_q, d_k", LAYER_PARAMS, ids=LAYER_IDS)
def test_shapes_and_weights_sum_to_one(make, d_q, d_k):
    torch.manual_seed(0)
    layer = make(d_q, d_k)
    query, key, value, mask = make_inputs(d_q, d_k)
    out = layer(query, key, value, mask)
    assert isinstance(out, AttentionOutput)
    assert out.context.shape == (B, M, D_V)
    assert out.weights.shape == (B, M, N)
    assert (out.weights >= 0).all()
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(B, M))
    assert (out.weights[1, :, 3:] == 0).all()  # padded keys of batch 1


@pytest.mark.parametrize("make, d_q, d_k", LAYER_PARAMS, ids=LAYER_IDS)
def test_context_equals_weights_times_value(make, d_q, d_k):
    torch.manual_seed(0)
    layer = make(d_q, d_k)
    query, key, value, mask = make_inputs(d_q, d_k)
    out = layer(query, key, value, mask)
    # weights recomputed from the raw scores with an explicit masked exp-normalise
    scores = layer.score(query, key)  # (b, m, n)
    keep = mask[:, None, :].float()
    exp = torch.exp(scores - scores.max(-1, keepdim=True).values) * keep
    expected_weights = exp / exp.sum(-1, keepdim=True)
    torch.testing.assert_close(out.weights, expected_weights)
    expected_context = torch.einsum("bmn,bnd->bmd", expected_weights, value)
    torch.testing.assert_close(out.context, expected_context)


@pytest.mark.parametrize("make, d_q, d_k", LAYER_PARAMS, ids=LAYER_IDS)
@pytest.mark.parametrize("mask_kind", ["key", "query_key"])
def test_padding_invariance(make, d_q, d_k, mask_kind):
    torch.manual_seed(0)
    layer = make(d_q, d_k)
    query, key, value, mask = make_inputs(d_q, d_k)
    if mask_kind == "query_key":
        mask = mask[:, None, :].expand(B, M, N).clone()
        mask[0, 1, 0] = False  # a per-query mask
    ref = layer(query, key, value, mask)

    extra = 3  # append padded keys/values holding large garbage
    g = torch.Generator().manual_seed(123)
    key_pad = torch.cat([key, 1e3 * torch.randn(B, extra, d_k, generator=g)], dim=1)
    value_pad = torch.cat([value, 1e3 * torch.randn(B, extra, D_V, generator=g)], dim=1)
    pad = torch.zeros(mask.shape[:-1] + (extra,), dtype=torch.bool)
    out = layer(query, key_pad, value_pad, torch.cat([mask, pad], dim=-1))
    torch.testing.assert_close(out.context, ref.context)
    torch.testing.assert_close(out.weights[..., :N], ref.weights)
    assert (out.weights[..., N:] == 0).all()

    # overwriting the already-masked positions with garbage changes nothing either
    key_g, value_g = key.clone(), value.clone()
    key_g[1, 3:] = 1e3
    value_g[1, 3:] = -1e3
    out2 = layer(query, key_g, value_g, mask)
    torch.testing.assert_close(out2.context, ref.context)


def test_dot_attention_hand_value():
    layer = DotProductAttention()
    query = torch.tensor([[[1.0, 0.0]]])  # (1, 1, 2)
    key = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])  # (1, 3, 2)
    value = torch.tensor([[[10.0], [20.0], [99.0]]])  # (1, 3, 1)
    mask = torch.tensor([[True, True, False]])
    out = layer(query, key, value, mask)
    # scores [1, 0, masked] -> weights [e/(1+e), 1/(1+e), 0]
    e = math.e
    torch.testing.assert_close(out.weights, torch.tensor([[[e / (1 + e), 1 / (1 + e), 0.0]]]))
    torch.testing.assert_close(out.context, torch.tensor([[[(10 * e + 20) / (1 + e)]]]))


def test_all_masked_row_gives_zero_context():
    layer = DotProductAttention()
    query, key, value, _ = make_inputs(6, 6)
    mask = torch.ones(B, M, N, dtype=torch.bool)
    mask[0, 2] = False
    out = layer(query, key, value, mask)
    assert not torch.isnan(out.context).any()
    assert (out.weights[0, 2] == 0).all()
    assert (out.context[0, 2] == 0).all()


def test_attention_accepts_any_score_module():
    layer = Attention(DotProductScore())
    query, key, value, mask = make_inputs(6, 6)
    torch.testing.assert_close(
        layer(query, key, value, mask).context, DotProductAttention()(query, key, value, mask).context
    )


def test_errors():
    query, key, value, mask = make_inputs(6, 6)
    layer = DotProductAttention()
    with pytest.raises(ValueError):
        layer(query, key, value[:, :-1])  # key and value lengths differ
    with pytest.raises(TypeError):
        layer(query, key, value, mask.float())
    with pytest.raises(ValueError):
        layer(query, key, value, mask[:, :-1])  # wrong n
    with pytest.raises(ValueError):
        Attention(DotProductScore(), dropout=1.0)


def test_dropout_inactive_in_eval():
    torch.manual_seed(0)
    layer = Attention(DotProductScore(), dropout=0.5).eval()
    query, key, value, mask = make_inputs(6, 6)
    ref = DotProductAttention()(query, key, value, mask)
    torch.testing.assert_close(layer(query, key, value, mask).context, ref.context)


@pytest.mark.parametrize("make, d_q, d_k", LAYER_PARAMS, ids=LAYER_IDS)
def test_gradients_reach_every_parameter_and_input(make, d_q, d_k):
    torch.manual_seed(0)
    layer = make(d_q, d_k)
    query, key, value, mask = make_inputs(d_q, d_k)
    for t in (query, key, value):
        t.requires_grad_(True)
    layer(query, key, value, mask).context.pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
    for t in (query, key, value):
        assert t.grad is not None and t.grad.abs().sum() > 0
    # padded values get no gradient
    assert (value.grad[1, 3:] == 0).all()


def test_nadaraya_watson_hand_value_scalar_inputs():
    # α(x, x_i) = softmax_i(-(x - x_i)^2 / 2) on scalars
    x_train = torch.tensor([[[0.0], [1.0], [3.0]]])  # (1, 3, 1)
    y_train = torch.tensor([[[1.0], [2.0], [4.0]]])
    query = torch.tensor([[[1.0]]])  # (1, 1, 1)
    out = NadarayaWatsonAttention()(query, x_train, y_train)
    logits = torch.tensor([-0.5, 0.0, -2.0])
    expected = torch.exp(logits) / torch.exp(logits).sum()
    torch.testing.assert_close(out.weights[0, 0], expected)
    torch.testing.assert_close(out.context[0, 0, 0], (expected * torch.tensor([1.0, 2.0, 4.0])).sum())


def test_parametric_nadaraya_watson_hand_value_and_learns_the_bandwidth():
    x_train = torch.tensor([[[0.0], [1.0], [3.0]]])
    y_train = torch.tensor([[[1.0], [2.0], [4.0]]])
    query = torch.tensor([[[1.0]]])
    layer = NadarayaWatsonAttention(dim=1)
    with torch.no_grad():
        layer.score.weight.fill_(2.0)  # -((x - x_i) w)^2 / 2
    out = layer(query, x_train, y_train)
    logits = torch.tensor([-2.0, 0.0, -8.0])
    torch.testing.assert_close(out.weights[0, 0], torch.softmax(logits, 0))
    out.context.sum().backward()
    assert layer.score.weight.grad is not None and layer.score.weight.grad.abs().sum() > 0


def test_nadaraya_watson_non_parametric_has_no_parameters_and_wide_query_is_nearest_neighbour():
    layer = NadarayaWatsonAttention()
    assert list(layer.parameters()) == []
    keys = torch.tensor([[[0.0, 0.0], [10.0, 10.0]]])
    values = torch.tensor([[[1.0], [5.0]]])
    out = layer(torch.tensor([[[9.0, 9.5]]]), keys, values)
    torch.testing.assert_close(out.context, torch.tensor([[[5.0]]]))  # kernel mass on the near key


@pytest.mark.parametrize("dim", [None, 3])
@pytest.mark.parametrize("shift", [1e3, 1e4])
def test_nadaraya_watson_does_not_depend_on_where_the_axis_starts(dim, shift):
    # inputs in [0, 5] on a grid of 1/64, so x + shift is exact in float32 and any change comes from
    # the score: the expanded ‖q‖² + ‖k‖² − 2qᵀk loses it to cancellation in float32
    g = torch.Generator().manual_seed(0)
    width = dim or 1
    keys = torch.randint(0, 321, (2, 50, width), generator=g).float() / 64
    values = torch.sin(keys.sum(-1, keepdim=True)) + 0.1 * torch.randn(2, 50, 1, generator=g)
    queries = torch.randint(0, 321, (2, 40, width), generator=g).float() / 64
    torch.manual_seed(0)
    attention = NadarayaWatsonAttention(dim)
    if dim is not None:
        with torch.no_grad():
            attention.score.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))  # a bandwidth per feature
    base = attention(queries, keys, values).context
    moved = attention(queries + shift, keys + shift, values).context
    assert (moved - base).abs().max() < 1e-4
    # and the score is still the Gaussian kernel's, by hand for one pair
    w = attention.score.weight if dim is not None else torch.ones(1)
    score = attention.score(queries[:1, :1] + shift, keys[:1, :1] + shift)
    expected = -(((queries[0, 0] - keys[0, 0]) * w) ** 2).sum() / 2
    torch.testing.assert_close(score[0, 0, 0], expected)
