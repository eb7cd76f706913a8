"""Caption decoders: token ids + image regions -> next-token logits, with attention maps.

Shape legend: ``b`` batch, ``n`` image regions, ``d_v`` region width, ``T`` caption
steps, ``V`` vocabulary size, ``d`` decoder width.

Every decoder has the same two entry points:

- ``forward(features, feature_mask, tokens, token_mask) -> DecoderOutput``: teacher forcing
  over a whole caption (``tokens`` starts with ``<bos>``);
- ``init_state(features, feature_mask) -> dict`` and ``step(token, state) -> DecoderStep``:
  one token at a time, for greedy and beam search (:mod:`vlkit.models.generation`). The
  state is a dict of batch-first tensors, so search can reorder or repeat it along dim 0.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from vlkit.attention import (
    AdditiveScore,
    HardContext,
    SinusoidalPositionalEncoding,
    TransformerDecoderBlock,
    check_mask,
    masked_softmax,
)
from vlkit.fusion.common import masked_mean

__all__ = [
    "DecoderOutput",
    "DecoderStep",
    "ShowAttendTellDecoder",
    "TransformerCaptionDecoder",
    "doubly_stochastic_penalty",
]


class DecoderOutput(NamedTuple):
    """Teacher-forced output of a caption decoder.

    Attributes:
        logits: ``(b, T, V)`` next-token logits at every step.
        weights: ``(b, T, n)`` attention over image regions at every step (rows sum to 1 over
            kept regions), or None when not computed.
        gates: ``(b, T)`` the Show-Attend-Tell gating scalar ``β_t`` in ``(0, 1)``, or None.
    """

    logits: Tensor
    weights: Tensor | None
    gates: Tensor | None


class DecoderStep(NamedTuple):
    """One decoding step.

    Attributes:
        logits: ``(b, V)`` next-token logits.
        state: the updated state (dict of batch-first tensors).
        weights: ``(b, n)`` attention over image regions for this step.
    """

    logits: Tensor
    state: dict[str, Tensor]
    weights: Tensor


def _check_inputs(features: Tensor, feature_mask: Tensor | None, width: int) -> Tensor:
    """Validate ``(b, n, d_v)`` features and return a bool ``(b, n)`` mask."""
    if features.dim() != 3 or features.shape[-1] != width:
        raise ValueError(
            f"image features must be (b, n, {width}) (set feature_dim to the encoder width), "
            f"got {tuple(features.shape)}"
        )
    if feature_mask is None:
        return torch.ones(features.shape[:2], dtype=torch.bool, device=features.device)
    check_mask(feature_mask)
    if feature_mask.shape != features.shape[:2]:
        raise ValueError(
            f"feature_mask must be (b, n) = {tuple(features.shape[:2])}, got {tuple(feature_mask.shape)}"
        )
    return feature_mask


def _check_tokens(tokens: Tensor, token_mask: Tensor | None, vocab_size: int, batch: int) -> Tensor:
    """Validate ``(b, T)`` token ids and return a bool ``(b, T)`` mask."""
    if tokens.dim() != 2 or tokens.shape[0] != batch or tokens.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"tokens must be (b, T) = ({batch}, T) integer ids, got {tuple(tokens.shape)} {tokens.dtype}"
        )
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= vocab_size):
        raise ValueError(f"token ids must be in [0, {vocab_size}), got [{tokens.min()}, {tokens.max()}]")
    if token_mask is None:
        return torch.ones_like(tokens, dtype=torch.bool)
    check_mask(token_mask)
    if token_mask.shape != tokens.shape:
        raise ValueError(f"token_mask must be {tuple(tokens.shape)}, got {tuple(token_mask.shape)}")
    return token_mask


def doubly_stochastic_penalty(
    weights: Tensor, token_mask: Tensor, feature_mask: Tensor | None = None
) -> Tensor:
    """The doubly stochastic attention regulariser of Show, Attend and Tell (Xu et al., ICML 2015).

    ``Σ_i (1 − Σ_t α_ti)²`` per caption: it pushes every region to receive, summed over the
    caption, a total attention of 1, so that the decoder looks at every part of the image.

    Args:
        weights: ``(b, T, n)`` attention weights ``α_ti``.
        token_mask: ``(b, T)`` bool, True for the steps of the caption that count: in teacher
            forcing, the steps whose target is a real token (the step whose input is ``<eos>``
            predicts padding and does not count).
        feature_mask: ``(b, n)`` bool, True for real regions (None: all).

    Returns:
        ``(b,)`` the penalty of each caption (>= 0); multiply by ``λ`` and average.
    """
    totals = (weights * token_mask[..., None].to(weights.dtype)).sum(1)  # (b, n)
    penalty = (1.0 - totals) ** 2
    if feature_mask is not None:
        penalty = penalty * feature_mask.to(penalty.dtype)
    return penalty.sum(-1)


class ShowAttendTellDecoder(nn.Module):
    """LSTM decoder with attention over image regions (Xu et al., "Show, Attend and Tell", ICML 2015, arXiv:1502.03044).

    At step ``t``, with previous word ``y_{t−1}`` and state ``(h_{t−1}, c_{t−1})``:

    - ``e_ti = w_vᵀ tanh(W_h h_{t−1} + W_a a_i)`` (additive score),
      ``α_t = softmax_i(e_ti)`` over kept regions;
    - soft attention ``z_t = Σ_i α_ti a_i``, or hard attention ``z_t = a_s`` with
      ``s ~ Categorical(α_t)`` (:class:`vlkit.attention.HardContext`: ``"gumbel"`` or ``"reinforce"``);
    - gate ``β_t = σ(f_β(h_{t−1}))`` (a scalar), ``ẑ_t = β_t z_t``;
    - ``h_t, c_t = LSTM([E y_{t−1}; ẑ_t], (h_{t−1}, c_{t−1}))``;
    - deep output ``logits_t = L_o(E y_{t−1} + L_h h_t + L_z ẑ_t)``.

    ``h_0, c_0`` are ``tanh`` of linear maps of the mean region (``f_init,h``, ``f_init,c``).
    Train with :func:`doubly_stochastic_penalty` on :attr:`DecoderOutput.weights`.

    Args:
        vocab_size: ``V`` (> 0), special tokens included.
        feature_dim: width ``d_v`` of the image regions.
        embed_dim: word embedding width ``m``.
        hidden_dim: LSTM width.
        attention_dim: hidden width of the additive score.
        dropout: dropout on the deep-output input, in ``[0, 1)``.
        hard_attention: None (soft attention, deterministic) or a
            :data:`vlkit.attention.HARD_ESTIMATORS` name. With ``"reinforce"`` the training loop
            must add :func:`vlkit.attention.hard_attention_loss` (``CaptioningTask`` does); the
            log-probabilities of the steps ``token_mask`` keeps are summed per caption.
        gate: use the gating scalar ``β`` (the paper's; False gives ``ẑ_t = z_t``).
        pad_id: padding token id (its embedding is zero).

    Shapes:
        ``forward(features: (b, n, d_v), feature_mask: (b, n) bool | None, tokens: (b, T) int64,
        token_mask: (b, T) bool | None) -> DecoderOutput(logits (b, T, V), weights (b, T, n),
        gates (b, T))``. ``token_mask`` marks the steps that count for hard attention's
        REINFORCE log-probabilities: pass the target mask (True where the next token is real),
        as ``CaptioningTask`` does; the logits do not depend on it.

    Raises:
        ValueError: out-of-range sizes, unknown hard-attention estimator, inputs of the wrong shape.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        embed_dim: int = 256,
        hidden_dim: int = 512,
        attention_dim: int = 256,
        dropout: float = 0.5,
        hard_attention: str | None = None,
        gate: bool = True,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if min(vocab_size, feature_dim, embed_dim, hidden_dim, attention_dim) < 1 or not 0 <= dropout < 1:
            raise ValueError("sizes must be >= 1 and dropout in [0, 1)")
        self.vocab_size, self.feature_dim, self.hidden_dim = vocab_size, feature_dim, hidden_dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)  # E
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.score = AdditiveScore(hidden_dim, feature_dim, attention_dim)
        self.hard = HardContext(hard_attention) if hard_attention is not None else None
        self.gate = nn.Linear(hidden_dim, 1) if gate else None  # f_β
        self.lstm = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.out_h = nn.Linear(hidden_dim, embed_dim)  # L_h
        self.out_z = nn.Linear(feature_dim, embed_dim, bias=False)  # L_z
        self.out = nn.Linear(embed_dim, vocab_size)  # L_o
        self.dropout = nn.Dropout(dropout)

    def init_state(self, features: Tensor, feature_mask: Tensor | None = None) -> dict[str, Tensor]:
        """``{h, c}`` from the mean kept region, plus the regions themselves."""
        feature_mask = _check_inputs(features, feature_mask, self.feature_dim)
        mean = masked_mean(features, feature_mask)  # (b, d_v)
        return {
            "h": torch.tanh(self.init_h(mean)),
            "c": torch.tanh(self.init_c(mean)),
            "features": features,
            "feature_mask": feature_mask,
        }

    def _advance(self, token: Tensor, state: dict[str, Tensor]) -> tuple:
        """One step: ``(logits (b, V), state, weights (b, n), gate (b,) | None, hard output | None)``."""
        h, features, feature_mask = state["h"], state["features"], state["feature_mask"]
        weights = masked_softmax(self.score(h[:, None], features), feature_mask[:, None])  # (b, 1, n)
        if self.hard is None:
            context, hard = (weights @ features)[:, 0], None  # z_t: (b, d_v)
        else:
            hard = self.hard(weights, features)
            context = hard.context[:, 0]
        gate = None
        if self.gate is not None:
            gate = torch.sigmoid(self.gate(h))  # β_t: (b, 1)
            context = gate * context
        embedded = self.embedding(token)  # (b, m)
        h, c = self.lstm(torch.cat([embedded, context], -1), (h, state["c"]))
        logits = self.out(self.dropout(embedded + self.out_h(h) + self.out_z(context)))  # (b, V)
        new_state = {"h": h, "c": c, "features": features, "feature_mask": feature_mask}
        return logits, new_state, weights[:, 0], None if gate is None else gate[:, 0], hard

    def step(self, token: Tensor, state: dict[str, Tensor]) -> DecoderStep:
        """One step: ``token (b,)`` is ``y_{t−1}``; returns the logits of ``y_t``."""
        logits, state, weights, _, _ = self._advance(token, state)
        return DecoderStep(logits, state, weights)

    def forward(
        self, features: Tensor, feature_mask: Tensor | None, tokens: Tensor, token_mask: Tensor | None = None
    ) -> DecoderOutput:
        state = self.init_state(features, feature_mask)
        token_mask = _check_tokens(tokens, token_mask, self.vocab_size, features.shape[0])
        logits, weights, gates, log_probs, entropies = [], [], [], [], []
        for t in range(tokens.shape[1]):
            step_logits, state, step_weights, gate, hard = self._advance(tokens[:, t], state)
            logits.append(step_logits)
            weights.append(step_weights)
            if gate is not None:
                gates.append(gate)
            if hard is not None:
                log_probs.append(hard.log_prob[:, 0])
                entropies.append(hard.entropy[:, 0])
        if self.hard is not None and self.training and self.hard.estimator == "reinforce":
            keep = token_mask.to(log_probs[0].dtype)
            # one policy sample per caption: the choices of all its steps
            self.hard.hold(torch.stack(log_probs, 1) * keep, torch.stack(entropies, 1) * keep)
        return DecoderOutput(
            torch.stack(logits, 1), torch.stack(weights, 1), torch.stack(gates, 1) if gates else None
        )


class TransformerCaptionDecoder(nn.Module):
    """Transformer decoder over image regions (Vaswani et al., NeurIPS 2017, arXiv:1706.03762).

    ``x = E y · √d + P`` (sinusoidal positions), then ``depth`` pre-norm
    :class:`vlkit.attention.TransformerDecoderBlock` (causal self-attention, cross-attention
    to the projected regions ``W a_i``, MLP), a final LayerNorm and a linear layer to the
    vocabulary (tied to ``E`` with ``tie_embeddings``). The attention map of a step is the
    last block's cross-attention averaged over heads. Regions carry no position: add them in
    the image encoder if the layout matters.

    Decoding one token at a time re-runs the prefix (captions are short; no key/value cache).

    Args:
        vocab_size: ``V`` (> 0).
        feature_dim: width ``d_v`` of the image regions.
        dim: decoder width ``d`` (divisible by ``num_heads``).
        depth: number of decoder blocks (>= 1).
        num_heads: attention heads.
        mlp_ratio: MLP width as a multiple of ``dim``.
        dropout: dropout on embeddings, after attention and in the MLP, in ``[0, 1)``.
        max_length: longest token sequence (positions table size).
        tie_embeddings: share the input embedding and output projection weights.
        pad_id: padding token id.

    Shapes:
        ``forward(features: (b, n, d_v), feature_mask: (b, n) bool | None, tokens: (b, T) int64,
        token_mask: (b, T) bool | None, need_weights: bool = False) -> DecoderOutput(logits
        (b, T, V), weights (b, T, n) | None, gates None)``.

    Raises:
        ValueError: out-of-range sizes, ``T > max_length``, inputs of the wrong shape.
    """

    def __init__(
        self,
        vocab_size: int,
        feature_dim: int,
        dim: int = 256,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
        max_length: int = 64,
        tie_embeddings: bool = True,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        if min(vocab_size, feature_dim, dim, depth, max_length) < 1 or not 0 <= dropout < 1:
            raise ValueError("sizes and depth must be >= 1 and dropout in [0, 1)")
        self.vocab_size, self.feature_dim, self.dim = vocab_size, feature_dim, dim
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        # std 1/√d, so that the scaled embedding (× √d) has unit variance and the tied output
        # layer starts with small logits
        nn.init.normal_(self.embedding.weight, std=dim**-0.5)
        with torch.no_grad():
            self.embedding.weight[pad_id].zero_()
        self.positions = SinusoidalPositionalEncoding(dim, max_length, dropout)
        self.memory = nn.Linear(feature_dim, dim)
        self.blocks = nn.ModuleList(
            TransformerDecoderBlock(dim, num_heads, mlp_ratio=mlp_ratio, proj_drop=dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, vocab_size)
        if tie_embeddings:
            self.out.weight = self.embedding.weight

    def forward(
        self,
        features: Tensor,
        feature_mask: Tensor | None,
        tokens: Tensor,
        token_mask: Tensor | None = None,
        need_weights: bool = False,
    ) -> DecoderOutput:
        feature_mask = _check_inputs(features, feature_mask, self.feature_dim)
        # causal attention already keeps real (left) tokens off the right padding
        _check_tokens(tokens, token_mask, self.vocab_size, features.shape[0])
        memory = self.memory(features)  # (b, n, d)
        x = self.positions(self.embedding(tokens) * math.sqrt(self.dim))  # (b, T, d)
        cross = None
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            x, _, cross = block(x, memory, feature_mask, need_weights=need_weights and last)
        logits = self.out(self.norm(x))  # (b, T, V)
        return DecoderOutput(logits, cross.mean(1) if cross is not None else None, None)

    def init_state(self, features: Tensor, feature_mask: Tensor | None = None) -> dict[str, Tensor]:
        """The regions and an empty prefix ``(b, 0)``."""
        feature_mask = _check_inputs(features, feature_mask, self.feature_dim)
        prefix = torch.zeros(features.shape[0], 0, dtype=torch.long, device=features.device)
        return {"features": features, "feature_mask": feature_mask, "prefix": prefix}

    def step(self, token: Tensor, state: dict[str, Tensor]) -> DecoderStep:
        """Append ``token (b,)`` to the prefix and return the logits of the next token."""
        prefix = torch.cat([state["prefix"], token[:, None]], 1)  # (b, t)
        out = self(state["features"], state["feature_mask"], prefix, need_weights=True)
        new_state = {**state, "prefix": prefix}
        return DecoderStep(out.logits[:, -1], new_state, out.weights[:, -1])
