"""Attention layers of sequence-to-sequence decoders: Luong's attention layer, Bahdanau's decoder step.

Shape legend: ``b`` batch, ``m`` target (decoder) positions, ``n`` source (encoder)
positions, ``d_q`` decoder width, ``d_k`` encoder width, ``e`` decoder input width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from vlkit.attention.masking import check_mask
from vlkit.attention.pooling import AdditiveAttention, Attention
from vlkit.attention.scoring import create_score

__all__ = [
    "BahdanauDecoderStep",
    "DecoderStepOutput",
    "LuongAttention",
    "LuongAttentionOutput",
]


class LuongAttentionOutput(NamedTuple):
    """Output of :class:`LuongAttention`.

    Attributes:
        output: ``(b, m, d_out)`` attentional hidden state ``h̃_t = tanh(W_c [c_t; h_t])``.
        context: ``(b, m, d_k)`` context vector ``c_t = Σ_s a_t(s) h̄_s``.
        weights: ``(b, m, n)`` alignment weights ``a_t``.
    """

    output: Tensor
    context: Tensor
    weights: Tensor


class LuongAttention(nn.Module):
    """Luong's attention layer (Luong, Pham & Manning, EMNLP 2015, arXiv:1508.04025, section 3).

    ``a_t = align(score(h_t, h̄_s))``, ``c_t = Σ_s a_t(s) h̄_s``,
    ``h̃_t = tanh(W_c [c_t; h_t])``. With the default alignment this is the paper's *global*
    attention; pass :class:`vlkit.attention.LocalMonotonicAlignment` or
    :class:`vlkit.attention.LocalPredictiveAlignment` for local-m / local-p.

    Args:
        query_dim: decoder state width ``d_q``.
        key_dim: encoder state width ``d_k`` (default ``query_dim``).
        score: ``"dot"`` (needs ``d_q = d_k``), ``"general"`` or ``"concat"`` (the paper's
            three), or any other name of :data:`vlkit.attention.SCORE_FUNCTIONS`.
        hidden_dim: width of the ``concat`` / ``additive`` score's hidden layer (default ``query_dim``).
        output_dim: width of ``h̃_t`` (default ``query_dim``).
        alignment: alignment module (default global softmax).

    Shapes:
        ``forward(query: (b, m, d_q) decoder states h_t, source: (b, n, d_k) encoder states
        h̄_s, mask: (b, n) or (b, m, n) bool | None, query_positions: (m,) or (b, m) int |
        None) -> LuongAttentionOutput``.

    Raises:
        ValueError: unknown score name, ``dot`` with different widths, or bad shapes.
        TypeError: non-bool mask.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int | None = None,
        score: str = "general",
        hidden_dim: int | None = None,
        output_dim: int | None = None,
        alignment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        key_dim = query_dim if key_dim is None else key_dim
        if score in ("dot", "scaled_dot") and key_dim != query_dim:
            raise ValueError(f"the {score!r} score needs key_dim == query_dim, got {key_dim} and {query_dim}")
        self.attention = Attention(create_score(score, query_dim, key_dim, hidden_dim), alignment=alignment)
        self.output_proj = nn.Linear(key_dim + query_dim, output_dim or query_dim, bias=False)  # W_c

    def forward(
        self,
        query: Tensor,
        source: Tensor,
        mask: Tensor | None = None,
        query_positions: Tensor | None = None,
    ) -> LuongAttentionOutput:
        context, weights = self.attention(query, source, source, mask, query_positions)  # (b, m, d_k)
        output = torch.tanh(self.output_proj(torch.cat([context, query], dim=-1)))  # h̃_t: (b, m, d_out)
        return LuongAttentionOutput(output, context, weights)


class DecoderStepOutput(NamedTuple):
    """Output of :class:`BahdanauDecoderStep`.

    Attributes:
        output: ``(b, d_q)`` new decoder state ``s_t`` (feed it to the output layer).
        state: ``(h, c)``, each ``(b, d_q)``: the LSTM state to pass to the next step.
        context: ``(b, d_k)`` context vector ``c_t`` used by this step.
        weights: ``(b, n)`` attention weights ``α_t`` over the encoder states.
    """

    output: Tensor
    state: tuple[Tensor, Tensor]
    context: Tensor
    weights: Tensor


class BahdanauDecoderStep(nn.Module):
    """One step of an attention decoder (Bahdanau, Cho & Bengio, ICLR 2015, arXiv:1409.0473).

    ``α_t = softmax_s(w_vᵀ tanh(W_q s_{t−1} + W_k h_s))``, ``c_t = Σ_s α_t(s) h_s``,
    ``s_t = LSTM([y_{t−1}; c_t], s_{t−1})``: the previous decoder state attends over the
    encoder states (additive attention), and the context joins the input of the recurrent
    cell. This is also the decoder of "Show, Attend and Tell" (Xu et al., ICML 2015), whose
    encoder states are image regions and which initialises the state from their mean
    (:meth:`init_state`); pass a :class:`vlkit.attention.HardAttention` as ``attention``
    for its hard variant. The recurrent cell is an LSTM (Xu et al.) rather than the GRU-like
    unit of Bahdanau et al.

    Args:
        input_dim: width ``e`` of the step input ``y_{t−1}`` (e.g. a word embedding).
        hidden_dim: decoder state width ``d_q``.
        encoder_dim: encoder state width ``d_k``.
        attention_dim: hidden width of the additive score (default ``hidden_dim``).
        attention: optional attention module ``(query (b, 1, d_q), key, value, mask) ->
            (context, weights, ...)`` replacing the additive attention.

    Shapes:
        ``forward(inputs: (b, e), encoder_states: (b, n, d_k), mask: (b, n) bool | None,
        state: ((b, d_q), (b, d_q)) | None) -> DecoderStepOutput``; ``state=None`` starts
        from :meth:`init_state`.

    Raises:
        ValueError: on inputs of the wrong shape.
        TypeError: non-bool mask.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        encoder_dim: int,
        attention_dim: int | None = None,
        attention: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.input_dim, self.hidden_dim, self.encoder_dim = input_dim, hidden_dim, encoder_dim
        self.attention = (
            AdditiveAttention(hidden_dim, encoder_dim, attention_dim or hidden_dim)
            if attention is None
            else attention
        )
        self.cell = nn.LSTMCell(input_dim + encoder_dim, hidden_dim)
        self.init_h = nn.Linear(encoder_dim, hidden_dim)
        self.init_c = nn.Linear(encoder_dim, hidden_dim)

    def init_state(self, encoder_states: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Initial ``(h_0, c_0)`` from the masked mean of the encoder states (Xu et al. 2015): ``(b, d_q)`` each."""
        check_mask(mask)
        if mask is None:
            mean = encoder_states.mean(1)
        else:
            keep = mask[:, :, None].to(encoder_states.dtype)  # (b, n, 1)
            mean = (encoder_states * keep).sum(1) / keep.sum(1).clamp_min(1)  # (b, d_k)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def forward(
        self,
        inputs: Tensor,
        encoder_states: Tensor,
        mask: Tensor | None = None,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> DecoderStepOutput:
        if inputs.dim() != 2 or inputs.shape[-1] != self.input_dim:
            raise ValueError(f"inputs must be (b, {self.input_dim}), got {tuple(inputs.shape)}")
        if encoder_states.dim() != 3 or encoder_states.shape[-1] != self.encoder_dim:
            raise ValueError(
                f"encoder_states must be (b, n, {self.encoder_dim}), got {tuple(encoder_states.shape)}"
            )
        if encoder_states.shape[0] != inputs.shape[0]:
            raise ValueError(
                f"inputs and encoder_states batch sizes differ: {inputs.shape[0]} vs {encoder_states.shape[0]}"
            )
        if state is None:
            state = self.init_state(encoder_states, mask)
        attended = self.attention(state[0][:, None, :], encoder_states, encoder_states, mask)
        context, weights = attended[0][:, 0], attended[1][:, 0]  # (b, d_k), (b, n)
        h, c = self.cell(torch.cat([inputs, context], dim=-1), state)  # (b, d_q) each
        return DecoderStepOutput(h, (h, c), context, weights)
