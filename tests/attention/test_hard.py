"""Tests for vlkit.attention.hard: sampling, evaluation, the two estimators, REINFORCE loss."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from vlkit.attention import (
    AdditiveScore,
    DotProductScore,
    HardAttention,
    HardAttentionOutput,
    HardContext,
    hard_attention_loss,
    masked_softmax,
)


def weights_and_values(seed=0):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(2, 3, 5, generator=g)
    mask = torch.ones(2, 1, 5, dtype=torch.bool)
    mask[1, 0, 3:] = False
    return masked_softmax(scores, mask), torch.randn(2, 5, 4, generator=g), mask


@pytest.mark.parametrize("estimator", ["gumbel", "reinforce"])
def test_training_returns_the_value_at_the_sampled_location(estimator):
    weights, value, _ = weights_and_values()
    out = HardContext(estimator).train()(weights, value)
    expected = value[torch.arange(2)[:, None], out.index]  # (b, m, d): v_s
    torch.testing.assert_close(out.context, expected)
    torch.testing.assert_close(out.log_prob, weights.gather(-1, out.index[..., None]).squeeze(-1).log())


@pytest.mark.parametrize("estimator", ["gumbel", "reinforce"])
def test_sampling_frequencies_follow_the_weights(estimator):
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.6, 0.3, 0.0])
    weights = probs.expand(1, 20_000, 4).contiguous()  # 20,000 independent draws
    value = torch.eye(4)[None]  # context = one-hot of the location
    out = HardContext(estimator).train()(weights, value)
    freq = out.context.mean(1)[0]
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    assert freq[3] == 0  # zero-weight (masked) locations are never sampled


@pytest.mark.parametrize("estimator", ["gumbel", "reinforce"])
def test_masked_locations_never_sampled_and_empty_rows_are_zero(estimator):
    torch.manual_seed(0)
    weights, value, _mask = weights_and_values()
    weights[0, 2] = 0.0  # a row with nothing to attend
    for _ in range(20):
        out = HardContext(estimator).train()(weights, value)
        assert torch.all(out.index[1] < 3)  # keys 3, 4 of row 1 are padding
        assert torch.all(out.context[0, 2] == 0) and out.index[0, 2] == 0 and out.log_prob[0, 2] == 0
        assert not torch.isnan(out.context).any() and not torch.isnan(out.log_prob).any()


def test_eval_argmax_is_deterministic():
    weights, value, _ = weights_and_values()
    layer = HardContext("reinforce").eval()
    a, b = layer(weights, value), layer(weights, value)
    torch.testing.assert_close(a.index, weights.argmax(-1))
    torch.testing.assert_close(a.context, b.context)
    torch.testing.assert_close(a.context, value[torch.arange(2)[:, None], weights.argmax(-1)])


def test_eval_expectation_is_the_soft_context():
    weights, value, _ = weights_and_values()
    out = HardContext(eval_mode="expectation").eval()(weights, value)
    torch.testing.assert_close(out.context, weights @ value)


def test_entropy_hand_value():
    weights = torch.tensor([[[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]]])
    out = HardContext().eval()(weights, torch.randn(1, 3, 2))
    torch.testing.assert_close(out.entropy, torch.tensor([[0.6931472, 0.0]]))


def test_gumbel_straight_through_gradient_reaches_the_scores():
    torch.manual_seed(0)
    layer = HardAttention(AdditiveScore(4, 4, 8), estimator="gumbel").train()
    q, k = torch.randn(2, 3, 4), torch.randn(2, 5, 4)
    value = torch.randn(2, 5, 6, requires_grad=True)
    out = layer(q, k, value)
    assert isinstance(out, HardAttentionOutput)
    out.context.pow(2).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert value.grad.abs().sum() > 0
    assert hard_attention_loss(layer, torch.zeros(2)) is None  # gumbel needs no policy loss


def test_reinforce_context_has_no_gradient_to_the_scores_only_the_policy_loss_does():
    torch.manual_seed(0)
    layer = HardAttention(AdditiveScore(4, 4, 8), estimator="reinforce").train()
    q, k, value = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    out = layer(q, k, value)
    assert not out.context.requires_grad
    loss = hard_attention_loss(layer, torch.tensor([1.0, -1.0]))
    loss.backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_policy_loss_value_and_moving_average_baseline():
    layer = HardContext("reinforce", baseline_decay=0.9, entropy_weight=0.5).train()
    weights = torch.tensor([[[0.25, 0.75]], [[0.5, 0.5]]], requires_grad=True)  # (b=2, m=1, n=2)
    value = torch.randn(2, 2, 3)
    out = layer(weights, value)
    reward = torch.tensor([2.0, 0.0])
    loss = layer.policy_loss(reward)
    advantage = reward - reward.mean()  # the first call's baseline is the first mean reward
    expected = -(advantage * out.log_prob[:, 0]).mean() - 0.5 * out.entropy[:, 0].mean()
    torch.testing.assert_close(loss, expected)
    assert layer.baseline.item() == pytest.approx(1.0)  # 0.9·1 + 0.1·1
    out = layer(weights, value)
    loss = layer.policy_loss(torch.tensor([3.0, 3.0]))
    expected = -((3.0 - 1.0) * out.log_prob[:, 0]).mean() - 0.5 * out.entropy[:, 0].mean()
    torch.testing.assert_close(loss, expected)
    assert layer.baseline.item() == pytest.approx(0.9 * 1.0 + 0.1 * 3.0)


def test_reinforce_gradient_is_an_unbiased_estimate_of_the_expected_reward_gradient():
    torch.manual_seed(0)
    logits = torch.tensor([0.2, -0.3, 0.5], requires_grad=True)
    rewards = torch.tensor([1.0, 3.0, -2.0])
    exact = torch.autograd.grad((torch.softmax(logits, 0) * rewards).sum(), logits)[0]
    layer = HardContext("reinforce", entropy_weight=0.0).train()
    draws = 200_000
    weights = torch.softmax(logits, 0).expand(draws, 1, 3)  # one draw per row
    out = layer(weights, torch.eye(3).expand(draws, 3, 3))
    reward = (out.context[:, 0] * rewards).sum(-1)  # r(s)
    estimate = torch.autograd.grad(-layer.policy_loss(reward), logits)[0]
    torch.testing.assert_close(estimate, exact, atol=0.02, rtol=0)


@pytest.mark.parametrize("estimator", ["gumbel", "reinforce"])
def test_a_hard_attention_policy_learns_to_pick_the_rewarding_location(estimator):
    # the value at location 2 is the only useful one; training must move α onto it
    torch.manual_seed(0)
    layer = HardAttention(AdditiveScore(4, 4, 8), estimator=estimator, entropy_weight=0.0).train()
    q, k = torch.randn(64, 1, 4), torch.randn(1, 5, 4).expand(64, 5, 4)
    value = torch.zeros(64, 5, 1)
    value[:, 2] = 1.0
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    start = layer.eval()(q, k, value).weights[:, 0, 2].mean().item()
    layer.train()
    for _ in range(150):
        out = layer(q, k, value)
        task_loss = 1.0 - out.context[:, 0, 0]  # (b,): 0 when location 2 is picked
        policy = hard_attention_loss(layer, -task_loss)
        loss = task_loss.mean() + (policy if policy is not None else 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = layer.eval()(q, k, value).weights[:, 0, 2].mean().item()
    assert start < 0.5 and end > 0.9


def test_hard_attention_loss_sums_every_pending_module_once():
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = HardContext("reinforce"), HardContext("reinforce")

    model = Two().train()
    weights, value, _ = weights_and_values()
    weights.requires_grad_(True)
    out_a, out_b = model.a(weights, value), model.b(weights, value)
    reward = torch.tensor([1.0, 0.0])
    loss = hard_attention_loss(model, reward)
    adv = reward - reward.mean()
    expected = sum(
        -(adv * o.log_prob.sum(-1)).mean() - 0.01 * o.entropy.sum(-1).mean() for o in (out_a, out_b)
    )
    torch.testing.assert_close(loss, expected)
    assert hard_attention_loss(model, reward) is None  # consumed
    with pytest.raises(RuntimeError):
        model.a.policy_loss(reward)


def test_eval_forward_leaves_nothing_pending():
    layer = HardContext("reinforce").eval()
    weights, value, _ = weights_and_values()
    layer(weights, value)
    assert hard_attention_loss(layer, torch.zeros(2)) is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: HardContext("sample"),
        lambda: HardContext(eval_mode="mode"),
        lambda: HardContext(temperature=0.0),
        lambda: HardContext(baseline_decay=1.0),
        lambda: HardContext(entropy_weight=-1.0),
        lambda: HardContext()(torch.rand(2, 3, 5), torch.randn(2, 4, 6)),
        lambda: HardContext()(torch.rand(2, 5), torch.randn(2, 5, 6)),
        lambda: HardAttention(DotProductScore())(
            torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 4, 4)
        ),
    ],
)
def test_value_errors(call):
    with pytest.raises(ValueError):
        call()


def test_policy_loss_reward_shape_error():
    layer = HardContext("reinforce").train()
    weights, value, _ = weights_and_values()
    layer(weights, value)
    with pytest.raises(ValueError, match=r"\(b,\)"):
        layer.policy_loss(torch.zeros(2, 1))


def test_hard_attention_weights_are_the_soft_distribution():
    layer = HardAttention(DotProductScore()).eval()
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = layer(q, k, v, mask)
    torch.testing.assert_close(out.weights, masked_softmax(q @ k.transpose(1, 2), mask[:, None]))
    assert torch.all(out.index[1] < 2)


# -- a kept weight that underflows to exactly 0 -------------------------------------------------------
@pytest.mark.parametrize("estimator", ["gumbel", "reinforce"])
@pytest.mark.parametrize(("autocast", "gap"), [(None, 120.0), (torch.bfloat16, 120.0), (torch.float16, 20.0)])
def test_a_kept_weight_of_exactly_zero_gives_finite_gradients(estimator, autocast, gap):
    # e^-121 is 0 in float32 (and bfloat16); under float16 autocast the weights are float16, where e^-21 is 0
    query = torch.ones(1, 1, 1)
    key = torch.tensor([[[0.0], [-gap], [1.0]]], requires_grad=True)
    value = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    layer = HardAttention(DotProductScore(), estimator=estimator, entropy_weight=0.0).train()
    context = torch.autocast("cpu", dtype=autocast) if autocast is not None else contextlib.nullcontext()
    with context:
        out = layer(query, key, value)
    assert out.weights[0, 0, 1] == 0  # not masked, yet exactly 0
    policy = hard_attention_loss(layer, torch.tensor([0.5]))  # REINFORCE, entropy weight 0
    loss = out.context.float().sum() + (policy if policy is not None else 0.0)
    (grad,) = torch.autograd.grad(loss, key, retain_graph=True)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    (grad,) = torch.autograd.grad(out.entropy.sum(), key)  # the entropy bonus itself
    assert torch.isfinite(grad).all()


def test_entropy_and_its_gradient_are_minus_sum_p_log_p():
    scores = torch.randn(2, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    scores.requires_grad_(True)
    weights = scores.softmax(-1)
    entropy = HardContext("reinforce").train()(weights, torch.randn(2, 5, 4, dtype=torch.float64)).entropy
    expected = -(weights * weights.log()).sum(-1)
    torch.testing.assert_close(entropy, expected)
    upstream = torch.randn_like(entropy)
    (got,) = torch.autograd.grad(entropy, scores, upstream, retain_graph=True)
    (want,) = torch.autograd.grad(expected, scores, upstream)
    torch.testing.assert_close(got, want)
