"""Hierarchical question-image co-attention (Lu, Yang, Batra & Parikh, NeurIPS 2016, arXiv:1606.00061).

The question is read at three levels, each co-attended with the image, and the attended
vectors are merged from the word level upwards by a recursive MLP
(``docs/mechanisms.md#hierarchical-co-attention``):

- word level ``Q^w``: the word embeddings (the ``text`` input, e.g. from
  :class:`vlkit.text.WordEmbeddingEncoder`);
- phrase level ``Q^p``: 1-D convolutions of widths 1, 2, 3 over the words,
  ``q̂^p_{s,t} = tanh(W_c^s q^w_{t:t+s−1})``, then the max over widths at each position;
- question level ``Q^s``: an LSTM over the phrase features.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d`` width, ``k`` hidden width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlkit.fusion.coattention import AlternatingCoAttention, ParallelCoAttention
from vlkit.fusion.common import FusionOutput, check_fusion_inputs, zero_padding
from vlkit.text.lstm import packed_lstm

__all__ = ["COATTENTION_KINDS", "HierarchicalCoAttention"]

#: The co-attention used at each level, by name.
COATTENTION_KINDS: dict[str, type[nn.Module]] = {
    "parallel": ParallelCoAttention,
    "alternating": AlternatingCoAttention,
}
_LEVELS = ("word", "phrase", "question")


class HierarchicalCoAttention(nn.Module):
    """Hierarchical co-attention with the recursive answer MLP (Lu et al., NeurIPS 2016,
    arXiv:1606.00061, section 3).

    At each level ``r ∈ {w, p, s}`` a co-attention layer gives ``v̂_r`` and ``q̂_r``; then::

        h_w = tanh(W_w(q̂_w + v̂_w))
        h_p = tanh(W_p[q̂_p + v̂_p; h_w])
        h_s = tanh(W_s[q̂_s + v̂_s; h_p])        fused = h_s

    (the answer layer ``p = softmax(W_h h_s)`` is the task head's). Padding tokens are zeroed
    before the phrase convolutions, never enter the LSTM (it is packed) and get zero weight,
    so they cannot change any output.

    Args:
        image_dim: width ``d`` of the image regions; must equal ``text_dim`` (the paper adds
            ``q̂ + v̂``).
        text_dim: width ``d`` of the word features.
        hidden_dim: width ``k`` of the co-attention layers and of ``h_w, h_p, h_s`` (> 0).
        dropout: dropout in the co-attention layers and before each ``W``, in ``[0, 1)``.
        coattention: ``"parallel"`` or ``"alternating"`` co-attention at every level.
        phrase_widths: the n-gram widths of the phrase convolutions (the paper's 1, 2, 3).

    Shapes:
        ``forward(image: (b, n, d), image_mask: (b, n) bool | None, text: (b, l, d),
        text_mask: (b, l) bool | None, right-padded) -> FusionOutput`` with ``fused`` = ``h_s``
        ``(b, k)``; ``image``/``text``/``image_weights``/``text_weights`` from the question
        level; ``text_tokens`` the question-level features ``Q^s`` ``(b, l, d)``; ``maps``
        ``"{level}_image"`` ``(b, n)`` and ``"{level}_text"`` ``(b, l)`` for every level.

    Raises:
        ValueError: ``image_dim != text_dim``, an unknown ``coattention`` (the message lists the
            valid ones), empty or non-positive ``phrase_widths``, wrongly shaped inputs, or a
            text mask that is not right-padded.
        TypeError: a mask that is not bool.
    """

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        hidden_dim: int = 512,
        dropout: float = 0.0,
        coattention: str = "parallel",
        phrase_widths: tuple[int, ...] = (1, 2, 3),
    ) -> None:
        super().__init__()
        if image_dim != text_dim:
            raise ValueError(
                f"hierarchical co-attention adds q̂ + v̂, so image_dim must equal text_dim, got "
                f"{image_dim} and {text_dim}; build the encoders with the same width"
            )
        if coattention not in COATTENTION_KINDS:
            raise ValueError(f"unknown coattention {coattention!r}; valid: {sorted(COATTENTION_KINDS)}")
        if not phrase_widths or min(phrase_widths) < 1:
            raise ValueError(f"phrase_widths must be positive n-gram widths, got {phrase_widths}")
        dim = text_dim
        self.image_dim, self.text_dim, self.output_dim = image_dim, text_dim, hidden_dim
        self.phrase_widths = tuple(phrase_widths)
        self.phrase_convs = nn.ModuleList(nn.Conv1d(dim, dim, width) for width in self.phrase_widths)  # W_c^s
        self.question_lstm = nn.LSTM(dim, dim, batch_first=True)
        kind = COATTENTION_KINDS[coattention]
        self.coattention = nn.ModuleDict({level: kind(dim, dim, hidden_dim, dropout) for level in _LEVELS})
        self.word_proj = nn.Linear(dim, hidden_dim)  # W_w
        self.phrase_proj = nn.Linear(dim + hidden_dim, hidden_dim)  # W_p
        self.question_proj = nn.Linear(dim + hidden_dim, hidden_dim)  # W_s
        self.dropout = nn.Dropout(dropout)

    def phrases(self, words: Tensor) -> Tensor:
        """Phrase level: ``(b, l, d)`` zero-padded words -> ``(b, l, d)``, max over n-gram widths."""
        x = words.transpose(1, 2)  # (b, d, l)
        grams = [torch.tanh(conv(F.pad(x, (0, conv.kernel_size[0] - 1)))) for conv in self.phrase_convs]
        return torch.stack(grams, 0).amax(0).transpose(1, 2)  # (b, l, d)

    def forward(
        self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None
    ) -> FusionOutput:
        check_fusion_inputs(image, image_mask, text, text_mask, self.image_dim, self.text_dim)
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        words = zero_padding(text, text_mask)  # Q^w, padding zeroed so the convolutions cannot see it
        phrases = zero_padding(self.phrases(words), text_mask)  # Q^p
        question = packed_lstm(self.question_lstm, phrases, text_mask)  # Q^s
        outs = {
            level: self.coattention[level](image, image_mask, features, text_mask)
            for level, features in zip(_LEVELS, (words, phrases, question))
        }
        hidden = torch.tanh(self.word_proj(self.dropout(outs["word"].image + outs["word"].text)))  # h_w
        for level, proj in (("phrase", self.phrase_proj), ("question", self.question_proj)):
            joint = torch.cat([outs[level].image + outs[level].text, hidden], -1)
            hidden = torch.tanh(proj(self.dropout(joint)))  # h_p, then h_s
        top = outs["question"]
        maps = {
            f"{level}_{side}": getattr(outs[level], f"{side}_weights")
            for level in _LEVELS
            for side in ("image", "text")
        }
        return FusionOutput(
            hidden, top.image, top.text, top.image_weights, top.text_weights, text_tokens=question, maps=maps
        )
