"""VQA accuracy (Antol et al., ICCV 2015, arXiv:1505.00468) as torchmetrics metrics."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["ExactMatchAccuracy", "VQAAccuracy"]


def _check(preds: Tensor, other: Tensor, name: str) -> None:
    if preds.dim() != 1 or preds.is_floating_point():
        raise ValueError(f"preds must be (b,) integer answer indices, got {preds.dtype} {tuple(preds.shape)}")
    if other.shape[0] != preds.shape[0]:
        raise ValueError(f"preds and {name} disagree on batch size: {preds.shape[0]} vs {other.shape[0]}")


class VQAAccuracy(Metric):
    """VQA accuracy as the official evaluation computes it, averaged over questions, in ``[0, 1]``.

    The official evaluation (Antol et al., "VQA: Visual Question Answering", ICCV 2015,
    arXiv:1505.00468; ``vqaEval.py`` of the VQA API) normalises the prediction and the ``N``
    human answers alike and, when ``k`` of them match the prediction, scores the mean over the
    ``N`` leave-one-out subsets of ``min(1, matches / 3)``:
    ``[k · min(1, (k − 1) / 3) + (N − k) · min(1, k / 3)] / N`` (0, 0.3, 0.6, 0.9, 1 for
    ``k = 0, 1, 2, 3, >= 4`` of ``N = 10``; exact match with a single answer). The metric takes
    that score of every answer of the vocabulary per question (``VQABatch.accuracy``, computed
    by :class:`vlkit.data.VQADataModule` with :func:`vlkit.data.vqa.answer_accuracies`) and
    averages the score of the predicted one. It is not the soft training target
    ``min(k / 3, 1)`` (``VQABatch.scores``), which gives 1/3, 2/3, 1 for ``k = 1, 2, 3``.

    ``update(preds: (b,) int64 answer indices, accuracy: (b, K) float in [0, 1])``;
    ``compute() -> ()`` float. Synchronised across processes like every torchmetrics metric.

    Raises:
        ValueError: on mismatched shapes.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total_score", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, accuracy: Tensor) -> None:
        _check(preds, accuracy, "accuracy")
        self.total_score += accuracy.gather(1, preds[:, None]).sum().double()
        self.count += preds.shape[0]

    def compute(self) -> Tensor:
        return (self.total_score / self.count.clamp(min=1)).float()


class ExactMatchAccuracy(Metric):
    """Fraction of predictions equal to the reference label (the most common answer), in ``[0, 1]``.

    Labels of ``-100`` (answer outside the vocabulary) count as wrong, never as ignored.

    ``update(preds: (b,) int64, labels: (b,) int64)``; ``compute() -> ()`` float.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, labels: Tensor) -> None:
        _check(preds, labels, "labels")
        self.correct += (preds == labels).sum()
        self.count += preds.shape[0]

    def compute(self) -> Tensor:
        return self.correct.float() / self.count.clamp(min=1).float()
