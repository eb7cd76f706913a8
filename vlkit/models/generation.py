"""Decoding a caption decoder: greedy search and batched beam search.

Shape legend: ``b`` batch, ``k`` beam size, ``L`` generated length, ``n`` image regions,
``V`` vocabulary.

Both work with any decoder that has ``init_state(features, feature_mask) -> dict`` and
``step(token (b,), state) -> (logits (b, V), state, weights (b, n))`` (see
:mod:`vlkit.models.decoders`); the state is a dict of batch-first tensors.

``<bos>`` and padding are never generated (their probability is set to 0 before choosing).
A hypothesis's **length** counts its tokens including ``<eos>``; its **score** is its total
log-probability divided by the GNMT length penalty ``((5 + length) / 6)^α`` (Wu et al.,
2016, arXiv:1609.08144); ``α = 0`` gives the plain log-probability.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

__all__ = ["GenerationOutput", "beam_search", "greedy_search", "length_penalty"]


class GenerationOutput(NamedTuple):
    """Decoded captions.

    Attributes:
        tokens: ``(b, L)`` int64 generated ids (no ``<bos>``), ending with ``<eos>`` unless
            cut at ``max_length``, then ``pad_id``.
        scores: ``(b,)`` the length-penalised score (equal to ``log_probs`` when ``α = 0``).
        log_probs: ``(b,)`` total log-probability of the tokens under the model (<= 0).
        lengths: ``(b,)`` int64 number of generated tokens (``<eos>`` included).
        weights: ``(b, L, n)`` the attention over regions at each generated token (0 after
            the end).
    """

    tokens: Tensor
    scores: Tensor
    log_probs: Tensor
    lengths: Tensor
    weights: Tensor


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty ``((5 + length) / 6)^α`` (float tensor of ``lengths``' shape)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def _check(max_length: int, beam_size: int = 1, alpha: float = 0.0) -> None:
    if max_length < 1 or beam_size < 1 or alpha < 0:
        raise ValueError(
            f"need max_length >= 1, beam_size >= 1 and length_penalty >= 0, got {max_length}, {beam_size}, {alpha}"
        )


def _next_log_probs(logits: Tensor, bos_id: int, pad_id: int) -> Tensor:
    """Log-softmax in float32 with ``<bos>`` and padding ruled out: ``(b, V)``."""
    log_probs = logits.float().log_softmax(-1)
    log_probs[:, [bos_id, pad_id]] = float("-inf")
    return log_probs


def _reorder(state: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
    return {key: value.index_select(0, index) for key, value in state.items()}


@torch.no_grad()
def greedy_search(
    decoder: nn.Module,
    features: Tensor,
    feature_mask: Tensor | None,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    max_length: int = 20,
    alpha: float = 0.0,
) -> GenerationOutput:
    """Pick the most likely token at every step until ``<eos>`` or ``max_length`` tokens.

    Args:
        decoder: a caption decoder (see the module docstring), in eval mode for deterministic output.
        features: ``(b, n, d_v)`` image regions; feature_mask ``(b, n)`` bool or None.
        bos_id, eos_id, pad_id: special token ids.
        max_length: most tokens to generate (>= 1), ``<eos>`` included.
        alpha: length-penalty exponent used for :attr:`GenerationOutput.scores` (>= 0).

    Raises:
        ValueError: out-of-range settings.
    """
    _check(max_length, 1, alpha)
    b = features.shape[0]
    state = decoder.init_state(features, feature_mask)
    token = torch.full((b,), bos_id, dtype=torch.long, device=features.device)
    done = torch.zeros(b, dtype=torch.bool, device=features.device)
    total = torch.zeros(b, device=features.device)
    lengths = torch.zeros(b, dtype=torch.long, device=features.device)
    tokens, weights = [], []
    for _ in range(max_length):
        logits, state, step_weights = decoder.step(token, state)
        log_probs = _next_log_probs(logits, bos_id, pad_id)  # (b, V)
        best, token = log_probs.max(-1)
        token = token.masked_fill(done, pad_id)
        total = total + best.masked_fill(done, 0.0)
        lengths = lengths + (~done).long()
        tokens.append(token)
        weights.append(step_weights.masked_fill(done[:, None], 0.0))
        done = done | (token == eos_id)
        if bool(done.all()):
            break
    return GenerationOutput(
        torch.stack(tokens, 1),
        total / length_penalty(lengths, alpha),
        total,
        lengths,
        torch.stack(weights, 1),
    )


@torch.no_grad()
def beam_search(
    decoder: nn.Module,
    features: Tensor,
    feature_mask: Tensor | None,
    bos_id: int,
    eos_id: int,
    pad_id: int = 0,
    max_length: int = 20,
    beam_size: int = 3,
    alpha: float = 0.0,
    keep_greedy: bool = True,
) -> GenerationOutput:
    """Batched beam search: keep the ``beam_size`` best prefixes of every image at each step.

    Each step extends every live prefix with every token and keeps the ``k`` highest
    log-probabilities per image; a prefix that emitted ``<eos>`` stays in the beam with its
    score frozen (it can only be extended by padding, at no cost). Search stops when every
    beam has ended or after ``max_length`` tokens; the result is the hypothesis with the
    best length-penalised score. With ``keep_greedy`` the greedy caption is one more
    candidate, so the result never scores lower than greedy decoding under the same length
    penalty (a plain beam can prune the greedy prefix and end worse). ``beam_size=1`` is
    greedy decoding.

    Args:
        decoder: a caption decoder (see the module docstring), in eval mode.
        features: ``(b, n, d_v)`` image regions; feature_mask ``(b, n)`` bool or None.
        bos_id, eos_id, pad_id: special token ids.
        max_length: most tokens to generate (>= 1), ``<eos>`` included.
        beam_size: ``k`` (>= 1).
        alpha: length-penalty exponent (>= 0; 0 = plain log-probability, larger favours
            longer captions).
        keep_greedy: also decode greedily and return the greedy caption where it scores higher.

    Returns:
        :class:`GenerationOutput` of the best hypothesis per image.

    Raises:
        ValueError: out-of-range settings.
    """
    _check(max_length, beam_size, alpha)
    b, k, device = features.shape[0], beam_size, features.device
    state = decoder.init_state(features, feature_mask)
    state = _reorder(state, torch.arange(b, device=device).repeat_interleave(k))  # (b·k, ...)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start equal: expand only the first one at step 1
    token = torch.full((b * k,), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(b * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(b * k, dtype=torch.long, device=device)
    history = torch.zeros(b * k, 0, dtype=torch.long, device=device)
    maps: Tensor | None = None
    for _ in range(max_length):
        logits, state, step_weights = decoder.step(token, state)
        log_probs = _next_log_probs(logits, bos_id, pad_id)  # (b·k, V)
        vocab = log_probs.shape[-1]
        # an ended beam continues only with padding, at log-probability 0
        ended = torch.full_like(log_probs, float("-inf"))
        ended[:, pad_id] = 0.0
        log_probs = torch.where(done[:, None], ended, log_probs)
        candidates = (scores.reshape(-1, 1) + log_probs).reshape(b, k * vocab)
        scores, flat = candidates.topk(k, dim=-1)  # (b, k)
        parent = (flat // vocab + torch.arange(b, device=device)[:, None] * k).reshape(-1)  # (b·k,)
        token = (flat % vocab).reshape(-1)
        state = _reorder(state, parent)
        done, lengths = done[parent], lengths[parent]
        step_weights = step_weights[parent].masked_fill(done[:, None], 0.0)
        lengths = lengths + (~done).long()
        history = torch.cat([history[parent], token[:, None]], 1)
        maps = step_weights[:, None] if maps is None else torch.cat([maps[parent], step_weights[:, None]], 1)
        done = done | (token == eos_id)
        if bool(done.all()):
            break
    final = scores / length_penalty(lengths.reshape(b, k), alpha)  # (b, k)
    best_score, best = final.max(-1)
    pick = best + torch.arange(b, device=device) * k
    tokens, weights = history[pick], maps[pick]
    log_probs, best_lengths = scores.reshape(-1)[pick], lengths[pick]

    if not keep_greedy:
        return GenerationOutput(tokens, best_score, log_probs, best_lengths, weights)
    # the greedy caption as one more candidate; pad both to one length
    greedy = greedy_search(decoder, features, feature_mask, bos_id, eos_id, pad_id, max_length, alpha)
    use_greedy = greedy.scores > best_score
    length = max(tokens.shape[1], greedy.tokens.shape[1])

    def pad(x: Tensor, value: float) -> Tensor:
        extra = length - x.shape[1]
        return torch.cat([x, x.new_full((x.shape[0], extra, *x.shape[2:]), value)], 1) if extra else x

    tokens = torch.where(use_greedy[:, None], pad(greedy.tokens, pad_id), pad(tokens, pad_id))
    weights = torch.where(use_greedy[:, None, None], pad(greedy.weights, 0.0), pad(weights, 0.0))
    return GenerationOutput(
        tokens,
        torch.where(use_greedy, greedy.scores, best_score),
        torch.where(use_greedy, greedy.log_probs, log_probs),
        torch.where(use_greedy, greedy.lengths, best_lengths),
        weights,
    )
