"""Hard (stochastic) attention (Xu et al., "Show, Attend and Tell", ICML 2015, arXiv:1502.03044).

Soft attention returns the expectation ``Σ_i α_i v_i``; hard attention samples one location
``s ~ Categorical(α)`` and returns ``v_s``. Sampling is not differentiable, so training needs
an estimator. vlkit has both standard ones:

- ``"gumbel"`` (default): straight-through Gumbel-softmax (Jang, Gu & Poole, ICLR 2017,
  arXiv:1611.01144; Maddison et al., ICLR 2017). The forward pass uses the one-hot sample,
  the backward pass the gradient of the tempered softmax. Low variance, slightly biased, and
  needs nothing from the training loop: use it by default.
- ``"reinforce"``: the score-function estimator of the paper (Williams, 1992), with a
  moving-average baseline and an entropy bonus. Unbiased but noisier; it needs a reward per
  sample, so the training loop must add :func:`hard_attention_loss` (``VQATask`` does this
  by itself, with reward ``log p(y | s, x)`` = minus the per-sample task loss, as in the
  paper). Use it to reproduce the paper or when the downstream loss is not differentiable.

In evaluation (``module.eval()``) nothing is sampled: ``eval_mode="argmax"`` returns the value
at the most likely location (deterministic), ``"expectation"`` the soft weighted sum.

Shape legend: ``b`` batch, ``m`` queries, ``n`` locations (keys/values), ``d`` value width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlkit.attention.pooling import Attention, _check_key_value

__all__ = [
    "HARD_ESTIMATORS",
    "HardAttention",
    "HardAttentionOutput",
    "HardContext",
    "HardContextOutput",
    "hard_attention_loss",
]

#: Training estimators of :class:`HardContext`.
HARD_ESTIMATORS = ("gumbel", "reinforce")
_EVAL_MODES = ("argmax", "expectation")


class HardContextOutput(NamedTuple):
    """Output of :class:`HardContext`.

    Attributes:
        context: ``(b, m, d)`` the value at the chosen location (0 for rows with no location).
        index: ``(b, m)`` int64 chosen location (0 for rows with no location).
        log_prob: ``(b, m)`` ``log α_index`` (0 for rows with no location); differentiable.
        entropy: ``(b, m)`` entropy ``−Σ α log α`` of the weights, in nats; differentiable, with
            finite gradients also where a kept weight is exactly 0 (underflow).
    """

    context: Tensor
    index: Tensor
    log_prob: Tensor
    entropy: Tensor


class HardAttentionOutput(NamedTuple):
    """Output of :class:`HardAttention`.

    Attributes:
        context: ``(b, m, d_v)`` the value at the sampled (training) or most likely (eval)
            location, or the soft expectation with ``eval_mode="expectation"`` in eval.
        weights: ``(b, m, n)`` the distribution ``α`` sampled from (sums to 1 over kept keys).
        index: ``(b, m)`` int64 chosen location.
        log_prob: ``(b, m)`` ``log α_index``.
        entropy: ``(b, m)`` entropy of ``α`` in nats.
    """

    context: Tensor
    weights: Tensor
    index: Tensor
    log_prob: Tensor
    entropy: Tensor


class HardContext(nn.Module):
    """The hard context step: pick one location from attention weights (Xu et al., ICML 2015).

    Training: sample ``s ~ Categorical(α)`` and return ``v_s``, with gradients from the chosen
    ``estimator`` (see the module docstring). Evaluation: argmax or expectation.

    With ``estimator="reinforce"``, every training forward remembers its ``log_prob`` and
    ``entropy``; :meth:`policy_loss` (or :func:`hard_attention_loss` for a whole model)
    turns them and a per-sample reward into the surrogate loss

        ``−mean_b[(r_b − baseline) · Σ_m log α_{s}] − entropy_weight · mean_b[Σ_m H(α)]``

    and then updates the moving-average baseline ``baseline ← decay·baseline +
    (1 − decay)·mean(r)`` (initialised to the first batch's mean reward).

    Args:
        estimator: ``"gumbel"`` (straight-through Gumbel-softmax) or ``"reinforce"``.
        temperature: Gumbel-softmax temperature ``τ > 0`` (smaller = closer to one-hot
            gradients, higher variance).
        eval_mode: ``"argmax"`` or ``"expectation"`` in evaluation.
        baseline_decay: REINFORCE moving-average decay in ``[0, 1)`` (the paper's 0.9).
        entropy_weight: REINFORCE entropy-bonus weight ``λ_e >= 0``.

    Shapes:
        ``forward(weights: (b, m, n) non-negative, rows summing to 1 or all 0,
        value: (b, n, d)) -> HardContextOutput``. Rows of all-zero weights (nothing to
        attend) give a zero context and are never sampled from.

    Raises:
        ValueError: unknown estimator or eval mode, out-of-range numbers, or shapes that do
            not fit.
    """

    def __init__(
        self,
        estimator: str = "gumbel",
        temperature: float = 1.0,
        eval_mode: str = "argmax",
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.01,
    ) -> None:
        super().__init__()
        if estimator not in HARD_ESTIMATORS:
            raise ValueError(
                f"unknown hard-attention estimator {estimator!r}; valid: {list(HARD_ESTIMATORS)}"
            )
        if eval_mode not in _EVAL_MODES:
            raise ValueError(f"unknown eval_mode {eval_mode!r}; valid: {list(_EVAL_MODES)}")
        if temperature <= 0 or not 0 <= baseline_decay < 1 or entropy_weight < 0:
            raise ValueError(
                f"need temperature > 0, 0 <= baseline_decay < 1 and entropy_weight >= 0, got "
                f"{temperature}, {baseline_decay} and {entropy_weight}"
            )
        self.estimator, self.temperature, self.eval_mode = estimator, temperature, eval_mode
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight
        self.register_buffer("baseline", torch.zeros(()))
        self.register_buffer("baseline_ready", torch.zeros((), dtype=torch.bool))
        self._pending: tuple[Tensor, Tensor] | None = None  # (log_prob, entropy) awaiting a reward

    def forward(self, weights: Tensor, value: Tensor) -> HardContextOutput:
        if weights.dim() != 3 or value.dim() != 3 or weights.shape[::2] != value.shape[:2]:
            raise ValueError(
                f"weights must be (b, m, n) and value (b, n, d) with the same b and n, got "
                f"{tuple(weights.shape)} and {tuple(value.shape)}"
            )
        probs = weights.to(torch.promote_types(weights.dtype, torch.float32))  # (b, m, n)
        valid = probs.sum(-1) > 0  # (b, m): rows with something to attend
        # rows with nothing to attend sample from a uniform stand-in, then get zeroed
        safe = torch.where(valid[..., None], probs, torch.ones_like(probs))
        safe = safe / safe.sum(-1, keepdim=True)
        finfo = torch.finfo(probs.dtype)
        # log α, with finite stand-ins where α = 0 (their gradient is exactly 0)
        log_probs = torch.log(safe.clamp_min(finfo.tiny)).masked_fill(safe <= 0, finfo.min)
        # −Σ α log α from the finite log α, the terms of α = 0 (0 log 0 = 0) left out by a select: a
        # weight that underflowed to 0 (kept, yet e^-120 in float32, e^-20 in float16) gets gradient 0,
        # where xlogy's backward would give 0/0 = NaN and a finite loss with NaN gradients
        entropy = -torch.where(probs > 0, probs * log_probs, 0.0).sum(-1)  # (b, m)

        if self.training and self.estimator == "gumbel":
            selector = F.gumbel_softmax(log_probs, tau=self.temperature, hard=True)  # one-hot, ST grads
            index = selector.argmax(-1)
        elif self.training:  # reinforce: sample, no gradient through the choice
            index = torch.distributions.Categorical(probs=safe).sample()  # (b, m)
            selector = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
        elif self.eval_mode == "argmax":
            index = probs.argmax(-1)
            selector = F.one_hot(index, probs.shape[-1]).to(probs.dtype)
        else:  # expectation
            index = probs.argmax(-1)
            selector = probs
        selector = selector * valid[..., None]  # all-masked rows -> zero context
        context = selector.to(value.dtype) @ value  # (b, m, d)
        log_prob = log_probs.gather(-1, index[..., None]).squeeze(-1).masked_fill(~valid, 0.0)  # (b, m)
        index = index.masked_fill(~valid, 0)
        if self.training and self.estimator == "reinforce":
            self._pending = (log_prob, entropy)
        return HardContextOutput(context, index, log_prob, entropy)

    def hold(self, log_prob: Tensor, entropy: Tensor) -> None:
        """Set the log-probabilities and entropies that await a reward, replacing the last forward's.

        For a module that calls this one once per step (a caption decoder) and rewards the
        whole sequence: it stacks the steps' ``log_prob`` and ``entropy`` into ``(b, T)``,
        zeroes steps that should not count (padding), and holds them here;
        :meth:`policy_loss` then sums over ``T``.

        Raises:
            ValueError: if the two tensors are not the same ``(b, T)`` shape.
        """
        if log_prob.dim() != 2 or log_prob.shape != entropy.shape:
            raise ValueError(
                f"log_prob and entropy must both be (b, T), got {tuple(log_prob.shape)} and {tuple(entropy.shape)}"
            )
        self._pending = (log_prob, entropy)

    def policy_loss(self, reward: Tensor) -> Tensor:
        """REINFORCE surrogate loss for the last training forward; updates the baseline.

        Args:
            reward: ``(b,)`` float reward of each sample (higher is better), e.g.
                ``log p(y | s, x)`` = minus the per-sample task loss. Treated as a constant.

        Returns:
            A scalar loss whose gradient is the score-function estimate (minus the entropy
            bonus); add it to the task loss.

        Raises:
            RuntimeError: if there is no pending training forward with ``estimator="reinforce"``.
            ValueError: if ``reward`` is not ``(b,)``.
        """
        if self._pending is None:
            raise RuntimeError(
                "policy_loss needs a preceding training forward with estimator='reinforce' "
                "(and each forward's sample can be used once)"
            )
        log_prob, entropy = self._pending
        if reward.shape != log_prob.shape[:1]:
            raise ValueError(f"reward must be (b,) = ({log_prob.shape[0]},), got {tuple(reward.shape)}")
        self._pending = None
        reward = reward.detach().float()
        with torch.no_grad():
            if not self.baseline_ready:
                self.baseline.copy_(reward.mean())
                self.baseline_ready.fill_(True)
            advantage = reward - self.baseline  # (b,)
            self.baseline.mul_(self.baseline_decay).add_((1 - self.baseline_decay) * reward.mean())
        policy = -(advantage * log_prob.sum(-1)).mean()
        return policy - self.entropy_weight * entropy.sum(-1).mean()


class HardAttention(Attention):
    """Hard attention: score, align, then sample one location (Xu et al., ICML 2015, arXiv:1502.03044).

    The weights ``α`` come from any score function and alignment exactly as in
    :class:`vlkit.attention.Attention`; the context is ``v_s`` for one location ``s``
    chosen by :class:`HardContext` (sampled in training, argmax in evaluation).

    Args:
        score: a score module ``(b, m, d_q), (b, n, d_k) -> (b, m, n)``, e.g.
            :class:`vlkit.attention.AdditiveScore` as in the paper.
        estimator, temperature, eval_mode, baseline_decay, entropy_weight: see
            :class:`HardContext`.
        alignment: alignment module (default global softmax).

    Shapes:
        ``forward(query: (b, m, d_q), key: (b, n, d_k), value: (b, n, d_v), mask: (b, n) or
        (b, m, n) bool, query_positions) -> HardAttentionOutput``.

    Raises:
        ValueError: bad settings (see :class:`HardContext`) or shapes.
        TypeError: non-bool mask.
    """

    def __init__(
        self,
        score: nn.Module,
        estimator: str = "gumbel",
        temperature: float = 1.0,
        eval_mode: str = "argmax",
        baseline_decay: float = 0.9,
        entropy_weight: float = 0.01,
        alignment: nn.Module | None = None,
    ) -> None:
        super().__init__(score, 0.0, alignment)
        self.hard = HardContext(estimator, temperature, eval_mode, baseline_decay, entropy_weight)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask: Tensor | None = None,
        query_positions: Tensor | None = None,
    ) -> HardAttentionOutput:
        _check_key_value(key, value)
        weights = self.align(query, key, mask, query_positions)  # (b, m, n)
        context, index, log_prob, entropy = self.hard(weights, value)
        return HardAttentionOutput(context, weights, index, log_prob, entropy)


def hard_attention_loss(model: nn.Module, reward: Tensor) -> Tensor | None:
    """Sum of the REINFORCE losses of every :class:`HardContext` in ``model`` awaiting a reward.

    Call it once after each training forward, with the per-sample reward, and add the result
    to the task loss. Modules using the Gumbel estimator, or not run in training mode, are
    skipped.

    Args:
        model: any module (searched with ``model.modules()``).
        reward: ``(b,)`` per-sample reward, e.g. minus the per-sample task loss.

    Returns:
        A scalar loss, or None when no module is waiting for a reward.
    """
    losses = [
        m.policy_loss(reward)
        for m in model.modules()
        if isinstance(m, HardContext) and m._pending is not None
    ]
    return torch.stack(losses).sum() if losses else None
