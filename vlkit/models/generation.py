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
        if not torch.compiler.is_exporting() and bool(done.all()):  # an exported graph runs every step
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
    """Batched beam search with finished hypotheses set aside (Wu et al., 2016, arXiv:1609.08144).

    Each step extends each of the ``k`` live prefixes of an image with every token. The
    extensions that end with ``<eos>`` are finished hypotheses: they leave the beam and are
    ranked by their length-penalised score ``log p / ((5 + length) / 6)^α`` against the best
    finished one so far. The ``k`` most likely other extensions are the next live prefixes
    (they all have the same length, so raw and penalised order agree). After ``max_length``
    tokens the live prefixes are candidates too, cut (no ``<eos>``). Search stops early once no
    live prefix can beat the best finished hypothesis: a prefix's log-probability only falls
    as it grows, so ``log p / lp(max_length)`` bounds every caption it can become. With a beam
    at least as wide as the number of prefixes the search is exhaustive; with ``beam_size=1``
    the live prefix is the greedy one, and the result the best-scored of the ways to end it
    (greedy's own ending or cut caption, or an earlier ``<eos>`` along its path).

    With ``keep_greedy`` the greedy caption is one more candidate, so the result never scores
    lower than greedy decoding under the same length penalty (a beam can prune the greedy
    prefix and end worse).

    Args:
        decoder: a caption decoder (see the module docstring), in eval mode.
        features: ``(b, n, d_v)`` image regions; feature_mask ``(b, n)`` bool or None.
        bos_id, eos_id, pad_id: special token ids.
        max_length: most tokens to generate (>= 1), ``<eos>`` included.
        beam_size: ``k`` (>= 1), the number of live prefixes per image.
        alpha: length-penalty exponent (>= 0; 0 = plain log-probability, larger favours
            longer captions).
        keep_greedy: also decode greedily and return the greedy caption where it scores higher.

    Returns:
        :class:`GenerationOutput` of the best hypothesis per image, ``L`` the longest of them.

    Raises:
        ValueError: out-of-range settings.
    """
    _check(max_length, beam_size, alpha)
    b, k, device = features.shape[0], beam_size, features.device
    images = torch.arange(b, device=device)
    state = decoder.init_state(features, feature_mask)
    state = _reorder(state, images.repeat_interleave(k))  # (b·k, ...)
    live = torch.full((b, k), float("-inf"), device=device)  # log p of the live prefixes
    live[:, 0] = 0.0  # all beams start equal: expand only the first one at step 1
    token = torch.full((b * k,), bos_id, dtype=torch.long, device=device)
    history = torch.full((b * k, max_length), pad_id, dtype=torch.long, device=device)
    maps: Tensor | None = None  # (b·k, max_length, n), allocated at step 1
    # the best finished hypothesis of each image
    best_score = torch.full((b,), float("-inf"), device=device)
    best_log_prob = torch.full((b,), float("-inf"), device=device)
    best_length = torch.zeros(b, dtype=torch.long, device=device)
    best_tokens = torch.full((b, max_length), pad_id, dtype=torch.long, device=device)
    best_maps: Tensor | None = None
    bound_penalty = float(length_penalty(torch.tensor(max_length), alpha))
    for t in range(max_length):
        logits, state, step_weights = decoder.step(token, state)
        log_probs = _next_log_probs(logits, bos_id, pad_id).reshape(b, k, -1)  # (b, k, V)
        vocab = log_probs.shape[-1]
        if maps is None:
            maps = step_weights.new_zeros(b * k, max_length, step_weights.shape[-1])
            best_maps = step_weights.new_zeros(b, max_length, step_weights.shape[-1])
        extended = live[..., None] + log_probs  # (b, k, V)
        # finished: each live prefix + <eos>; the best of each image against the best so far
        ended = extended[..., eos_id].clone()  # (b, k)
        candidates = [
            (ended, torch.full_like(ended, eos_id, dtype=torch.long), torch.arange(k, device=device))
        ]
        extended[..., eos_id] = float("-inf")
        live, flat = extended.reshape(b, k * vocab).topk(k, dim=-1)  # (b, k) the next live prefixes
        parent = flat // vocab  # (b, k) beam index within the image
        next_token = flat % vocab
        if t == max_length - 1:  # the live prefixes are cut: candidates as they are
            candidates.append((live, next_token, parent))
        penalty = float(length_penalty(torch.tensor(t + 1), alpha))
        for log_p, tokens_t, beams in candidates:
            beams = beams.expand_as(log_p)
            top, j = (log_p / penalty).max(-1)  # (b,) the best candidate of each image
            better = top > best_score
            rows = images * k + beams.gather(1, j[:, None])[:, 0]  # (b,) rows of the parents
            new_tokens = history[rows]  # (b, max_length), a copy
            new_tokens[:, t] = tokens_t.gather(1, j[:, None])[:, 0]
            new_maps = maps[rows]
            new_maps[:, t] = step_weights[rows]
            best_score = torch.where(better, top, best_score)
            best_log_prob = torch.where(better, log_p.gather(1, j[:, None])[:, 0], best_log_prob)
            best_length = torch.where(better, torch.full_like(best_length, t + 1), best_length)
            best_tokens = torch.where(better[:, None], new_tokens, best_tokens)
            best_maps = torch.where(better[:, None, None], new_maps, best_maps)
        rows = (parent + images[:, None] * k).reshape(-1)  # (b·k,)
        token = next_token.reshape(-1)
        state = _reorder(state, rows)
        history = history[rows]
        history[:, t] = token
        maps = maps[rows]
        maps[:, t] = step_weights[rows]
        # stop once no live prefix can become a caption that beats the best finished one
        if bool((live.max(-1).values / bound_penalty <= best_score).all()):
            break
    length = int(best_length.max().clamp_min(1))
    tokens, weights = best_tokens[:, :length], best_maps[:, :length]
    if not keep_greedy:
        return GenerationOutput(tokens, best_score, best_log_prob, best_length, weights)
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
        torch.where(use_greedy, greedy.log_probs, best_log_prob),
        torch.where(use_greedy, greedy.lengths, best_length),
        weights,
    )
