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
from vlkit.metrics.classification import classification_metrics, confusion_matrix_metric
from vlkit.metrics.vqa import (
    ExactMatchAccuracy,
    VQAAccuracy,
    answer_accuracies,
    normalize_answer,
    vqa_accuracy,
)

__all__ = [
    "CaptionMetrics",
    "ExactMatchAccuracy",
    "VQAAccuracy",
    "answer_accuracies",
    "caption_scores",
    "caption_tokenize",
    "cider_d",
    "classification_metrics",
    "confusion_matrix_metric",
    "corpus_bleu",
    "normalize_answer",
    "rouge_l",
    "sentence_bleu",
    "vqa_accuracy",
]
