"""Embedding + bidirectional LSTM text encoder.

Shape legend: ``b`` batch, ``l`` tokens, ``e`` embedding width, ``d`` output width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from vlkit.text.common import TextEncoderOutput, check_token_ids

__all__ = ["LSTMTextEncoder", "packed_lstm", "unpacked_lstm"]


class LSTMTextEncoder(nn.Module):
    """Word embeddings followed by a (bi)LSTM (Hochreiter & Schmidhuber, 1997).

    The question encoder of LSTM-based VQA models (Antol et al., ICCV 2015, arXiv:1505.00468;
    Lu et al., NeurIPS 2016). Sequences are packed, so padding never enters the recurrence
    and cannot change the features of real tokens.

    Args:
        vocab_size: number of token ids (> 1); id 0 is padding.
        dim: output width ``d``; with ``bidirectional`` each direction has ``d/2`` units
            (``d`` must then be even).
        embed_dim: word embedding width ``e``.
        num_layers: stacked LSTM layers (>= 1).
        bidirectional: run a forward and a backward LSTM and concatenate them.
        dropout: dropout on embeddings and on the output, in ``[0, 1)``.
        norm: LayerNorm the LSTM states (Ba et al., 2016, arXiv:1607.06450), so that text
            features have the same scale as LayerNorm-ed image features when fused.

    Shapes:
        ``forward(token_ids: (b, l) int64, mask: (b, l) bool | None) -> TextEncoderOutput``.
        Without a mask, ``token_ids != 0`` is used. Padding must be on the right.

    Raises:
        ValueError: bad widths, non-2-D ids, ids outside ``[0, vocab_size)``, or padding
            that is not right-aligned.
        TypeError: non-bool mask.
    """

    def __init__(
        self,
        vocab_size: int,
        dim: int = 256,
        embed_dim: int = 128,
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        norm: bool = True,
    ) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2 (padding + at least one word), got {vocab_size}")
        if bidirectional and dim % 2:
            raise ValueError(f"a bidirectional LSTM needs an even dim, got {dim}")
        self.vocab_size, self.dim = vocab_size, dim
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=0)
        self.lstm = nn.LSTM(
            embed_dim,
            dim // 2 if bidirectional else dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, token_ids: Tensor, mask: Tensor | None = None) -> TextEncoderOutput:
        mask = check_token_ids(token_ids, mask, self.vocab_size)
        features = packed_lstm(self.lstm, self.dropout(self.embedding(token_ids)), mask)  # (b, l, d)
        features = self.dropout(self.norm(features)) * mask[:, :, None].to(features.dtype)
        return TextEncoderOutput(features, mask)


def packed_lstm(lstm: nn.LSTM, x: Tensor, mask: Tensor) -> Tensor:
    """Run a ``batch_first`` LSTM over the kept prefix of each sequence only.

    The sequences are packed, so padding never enters the recurrence (in either direction)
    and cannot change the states of real positions; padded positions come back as zeros.

    Args:
        lstm: an :class:`torch.nn.LSTM` built with ``batch_first=True``.
        x: ``(b, l, e)`` inputs.
        mask: ``(b, l)`` bool, right-padded (True positions before False ones); a row with
            no True position gives zeros.

    Returns:
        ``(b, l, d)`` hidden states (``d`` = hidden size × directions).

    Under :func:`torch.export.export` (and so ONNX export) the same result comes from
    :func:`unpacked_lstm`, which has no data-dependent shapes; the mask is then not checked.

    Raises:
        ValueError: if the mask is not right-padded.
    """
    if torch.compiler.is_exporting():
        return unpacked_lstm(lstm, x, mask)
    lengths = mask.sum(1)  # (b,)
    positions = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask, positions[None, :] < lengths[:, None]):
        raise ValueError("mask must be right-padded (all True positions before all False ones)")
    packed = pack_padded_sequence(x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
    out, _ = lstm(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (b, l, d)
    return out * mask[:, :, None].to(out.dtype)


def unpacked_lstm(lstm: nn.LSTM, x: Tensor, mask: Tensor) -> Tensor:
    """:func:`packed_lstm` without packing, for export: the same hidden states from fixed shapes.

    A right-padded sequence run forward reaches its real positions before its padding, so the
    forward direction runs on the padded batch as it is; the backward direction runs on each
    sequence reversed within its length (padding stays at the end) and its output is reversed
    back. Layers run one at a time (each direction with its own weights, through ``torch.lstm``);
    dropout between layers is not applied (evaluation).

    Args:
        lstm: an :class:`torch.nn.LSTM` built with ``batch_first=True`` (no ``proj_size``).
        x: ``(b, l, e)`` inputs.
        mask: ``(b, l)`` bool, right-padded; a row with no True position gives zeros.

    Returns:
        ``(b, l, d)`` hidden states, zero at padded positions.

    Raises:
        ValueError: an LSTM with ``proj_size`` or without ``batch_first``.
    """
    if lstm.proj_size or not lstm.batch_first:
        raise ValueError("unpacked_lstm needs an nn.LSTM with batch_first=True and no proj_size")
    lengths = mask.sum(1, keepdim=True)  # (b, 1)
    positions = torch.arange(mask.shape[1], device=mask.device)[None, :]  # (1, l)
    # position t of the reversed sequence reads position length - 1 - t; padding stays where it is
    reverse = torch.where(positions < lengths, lengths - 1 - positions, positions)  # (b, l)
    hidden = x
    for layer in range(lstm.num_layers):
        outputs = []
        for suffix in ("", "_reverse")[: 1 + int(lstm.bidirectional)]:
            names = ["weight_ih", "weight_hh", *(["bias_ih", "bias_hh"] if lstm.bias else [])]
            weights = [getattr(lstm, f"{name}_l{layer}{suffix}") for name in names]
            steps = hidden if not suffix else _gather_steps(hidden, reverse)
            state = steps.new_zeros(1, steps.shape[0], lstm.hidden_size)
            out, _, _ = torch.lstm(steps, (state, state), weights, lstm.bias, 1, 0.0, False, False, True)
            outputs.append(out if not suffix else _gather_steps(out, reverse))
        hidden = torch.cat(outputs, dim=-1)
    return hidden * mask[:, :, None].to(hidden.dtype)


def _gather_steps(x: Tensor, index: Tensor) -> Tensor:
    """``x[b, index[b, t]]`` for ``(b, l, d)`` ``x`` and ``(b, l)`` ``index``."""
    return x.gather(1, index[:, :, None].expand(-1, -1, x.shape[-1]))
