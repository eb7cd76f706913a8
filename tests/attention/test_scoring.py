"""Tests for vlkit.attention.scoring: one exact hand-computed value per score function.

Contract (docs/mechanisms.md#score-functions): dot ``qᵀk``, scaled dot ``qᵀk/√d``,
general ``qᵀWk``, additive ``w_vᵀ tanh(W_q q + W_k k)``, concat ``vᵀ tanh(W[q; k])``;
every score maps ``(b, m, d_q), (b, n, d_k) -> (b, m, n)``.
"""

from __future__ import annotations

import math

import pytest
import torch

from vlkit.attention import (
    SCORE_FUNCTIONS,
    AdditiveScore,
    ConcatScore,
    DotProductScore,
    GeneralScore,
    ScaledDotProductScore,
    create_score,
)


# --------------------------------------------------------------------------- exact values
def test_dot_score_hand_value():
    query = torch.tensor([[[1.0, 2.0]]])  # (1, 1, 2)
    key = torch.tensor([[[3.0, 4.0], [5.0, -6.0]]])  # (1, 2, 2)
    scores = DotProductScore()(query, key)
    # 1*3 + 2*4 = 11 ; 1*5 + 2*(-6) = -7
    assert scores.shape == (1, 1, 2)
    torch.testing.assert_close(scores, torch.tensor([[[11.0, -7.0]]]))


def test_scaled_dot_score_hand_value():
    query = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [2.0, 0.0, 0.0, 0.0]]])  # (1, 2, 4)
    key = torch.tensor([[[2.0, 0.0, 4.0, 0.0]]])  # (1, 1, 4)
    scores = ScaledDotProductScore()(query, key)
    # d = 4, √d = 2: (2 + 4) / 2 = 3 ; (2*2) / 2 = 2
    assert scores.shape == (1, 2, 1)
    torch.testing.assert_close(scores, torch.tensor([[[3.0], [2.0]]]))


def test_general_score_hand_value_with_different_widths():
    score = GeneralScore(query_dim=2, key_dim=3)
    with torch.no_grad():
        score.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]]))  # W: (d_q, d_k)
    query = torch.tensor([[[1.0, 2.0]]])  # (1, 1, 2)
    key = torch.tensor([[[1.0, 1.0, 1.0], [0.0, 3.0, 1.0]]])  # (1, 2, 3)
    scores = score(query, key)
    # qᵀW = [1*1 + 2*0, 1*0 + 2*1, 1*2 + 2*(-1)] = [1, 2, 0]
    # key 0: [1, 2, 0]·[1, 1, 1] = 3 ; key 1: [1, 2, 0]·[0, 3, 1] = 6
    assert scores.shape == (1, 1, 2)
    torch.testing.assert_close(scores, torch.tensor([[[3.0, 6.0]]]))


def test_additive_score_hand_value():
    score = AdditiveScore(query_dim=2, key_dim=1, hidden_dim=2)
    with torch.no_grad():
        score.query_proj.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # W_q (2 x 2)
        score.key_proj.weight.copy_(torch.tensor([[1.0], [-1.0]]))  # W_k (2 x 1)
        score.score_proj.weight.copy_(torch.tensor([[2.0, 3.0]]))  # w_v (1 x 2)
    query = torch.tensor([[[0.5, 0.25]]])  # (1, 1, 2)
    key = torch.tensor([[[1.0], [-2.0]]])  # (1, 2, 1)
    scores = score(query, key)
    # key 0: W_q q + W_k k = [0.5 + 1, 0.25 - 1] = [1.5, -0.75]
    # key 1: [0.5 - 2, 0.25 + 2] = [-1.5, 2.25]
    expected = torch.tensor(
        [[[2 * math.tanh(1.5) + 3 * math.tanh(-0.75), 2 * math.tanh(-1.5) + 3 * math.tanh(2.25)]]]
    )
    assert scores.shape == (1, 1, 2)
    torch.testing.assert_close(scores, expected)


def test_concat_score_hand_value():
    score = ConcatScore(query_dim=1, key_dim=2, hidden_dim=2)
    with torch.no_grad():
        score.proj.weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 1.0]]))  # W (2 x 3)
        score.score_proj.weight.copy_(torch.tensor([[1.0, -2.0]]))  # v (1 x 2)
    query = torch.tensor([[[0.5], [-1.0]]])  # (1, 2, 1)
    key = torch.tensor([[[0.25, -0.5]]])  # (1, 1, 2)
    scores = score(query, key)
    # query 0: [q; k] = [0.5, 0.25, -0.5] -> W[q; k] = [0.5 + 0.5, -0.25 - 0.5] = [1.0, -0.75]
    # query 1: [q; k] = [-1, 0.25, -0.5] -> W[q; k] = [-1 + 0.5, -0.25 - 0.5] = [-0.5, -0.75]
    expected = torch.tensor(
        [[[math.tanh(1.0) - 2 * math.tanh(-0.75)], [math.tanh(-0.5) - 2 * math.tanh(-0.75)]]]
    )
    assert scores.shape == (1, 2, 1)
    torch.testing.assert_close(scores, expected)


def test_concat_score_equals_explicit_concatenation():
    torch.manual_seed(0)
    b, m, n, d_q, d_k, hidden = 2, 3, 4, 5, 3, 6
    score = ConcatScore(d_q, d_k, hidden)
    query, key = torch.randn(b, m, d_q), torch.randn(b, n, d_k)
    pairs = torch.cat(
        [query[:, :, None, :].expand(b, m, n, d_q), key[:, None, :, :].expand(b, m, n, d_k)], dim=-1
    )  # (b, m, n, d_q + d_k): [q; k] for every pair
    W, v = score.proj.weight, score.score_proj.weight[0]  # (hidden, d_q + d_k), (hidden,)
    expected = torch.tanh(pairs @ W.T) @ v  # vᵀ tanh(W[q; k])
    torch.testing.assert_close(score(query, key), expected)


def test_additive_score_equals_explicit_loop():
    torch.manual_seed(1)
    score = AdditiveScore(query_dim=3, key_dim=5, hidden_dim=4)
    query, key = torch.randn(2, 2, 3), torch.randn(2, 3, 5)
    Wq, Wk, wv = score.query_proj.weight, score.key_proj.weight, score.score_proj.weight[0]
    expected = torch.empty(2, 2, 3)
    for bi in range(2):
        for i in range(2):
            for j in range(3):
                expected[bi, i, j] = wv @ torch.tanh(Wq @ query[bi, i] + Wk @ key[bi, j])
    torch.testing.assert_close(score(query, key), expected)


# --------------------------------------------------------------------------- statistics
def test_scaled_dot_keeps_unit_variance():
    g = torch.Generator().manual_seed(0)
    d = 1024
    query = torch.randn(1, 64, d, generator=g)
    key = torch.randn(1, 64, d, generator=g)
    scaled = ScaledDotProductScore()(query, key)
    raw = DotProductScore()(query, key)
    assert abs(scaled.var().item() - 1.0) < 0.15  # 4096 samples of a unit-variance score
    assert abs(raw.var().item() / d - 1.0) < 0.15  # the unscaled score has variance d


# --------------------------------------------------------------------------- factory
@pytest.mark.parametrize(
    "name, cls",
    [
        ("dot", DotProductScore),
        ("scaled_dot", ScaledDotProductScore),
        ("general", GeneralScore),
        ("multiplicative", GeneralScore),
        ("additive", AdditiveScore),
        ("concat", ConcatScore),
    ],
)
def test_create_score_builds_each_name(name, cls):
    score = create_score(name, query_dim=4, key_dim=6, hidden_dim=3)
    assert type(score) is cls
    out = score(torch.randn(2, 3, 4), torch.randn(2, 5, 4 if name in ("dot", "scaled_dot") else 6))
    assert out.shape == (2, 3, 5)


def test_create_score_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as info:
        create_score("cosine", query_dim=4)
    message = str(info.value)
    assert "cosine" in message
    for name in ("dot", "scaled_dot", "general", "multiplicative", "additive", "concat"):
        assert name in message
    assert set(SCORE_FUNCTIONS) == {
        "dot",
        "scaled_dot",
        "general",
        "multiplicative",
        "additive",
        "concat",
        "gaussian",
    }


@pytest.mark.parametrize("name", ["general", "additive", "concat"])
def test_create_score_parametric_needs_query_dim(name):
    with pytest.raises(ValueError, match="query_dim"):
        create_score(name)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("cls", [DotProductScore, ScaledDotProductScore])
def test_width_mismatch_raises_for_dot_scores(cls):
    with pytest.raises(ValueError, match="same width"):
        cls()(torch.randn(2, 3, 4), torch.randn(2, 5, 6))


@pytest.mark.parametrize("name", ["dot", "general", "additive", "concat"])
def test_bad_shapes_raise_value_error(name):
    score = create_score(name, query_dim=4)
    with pytest.raises(ValueError, match="batch"):
        score(torch.randn(2, 3, 4), torch.randn(3, 5, 4))
    with pytest.raises(ValueError):
        score(torch.randn(3, 4), torch.randn(5, 4))


# --------------------------------------------------------------------------- gradients
@pytest.mark.parametrize(
    "make_score",
    [lambda: GeneralScore(4, 6), lambda: AdditiveScore(4, 6, 5), lambda: ConcatScore(4, 6, 5)],
    ids=["general", "additive", "concat"],
)
def test_gradients_reach_every_parameter(make_score):
    torch.manual_seed(0)
    score = make_score()
    query = torch.randn(2, 3, 4, requires_grad=True)
    key = torch.randn(2, 5, 6, requires_grad=True)
    params = dict(score.named_parameters())
    assert params, "parametric score has no parameters"
    score(query, key).pow(2).sum().backward()
    for name, p in params.items():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert key.grad is not None and key.grad.abs().sum() > 0
