"""Metrics (torchmetrics style)."""

from vlkit.metrics.caption import (
    CaptionMetrics,
    caption_scores,
    caption_tokenize,
    cider_d,
    corpus_bleu,
    rouge_l,
    sentence_bleu,
)
from vlkit.metrics.vqa import ExactMatchAccuracy, VQAAccuracy

__all__ = [
    "CaptionMetrics",
    "ExactMatchAccuracy",
    "VQAAccuracy",
    "caption_scores",
    "caption_tokenize",
    "cider_d",
    "corpus_bleu",
    "rouge_l",
    "sentence_bleu",
]
