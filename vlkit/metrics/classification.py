"""Classification metrics for multimodal sentiment: accuracy, macro-F1 and the confusion matrix.

They are torchmetrics' own (synchronised across processes in distributed runs); this module
only fixes which ones a sentiment task reports.
"""

from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

__all__ = ["classification_metrics", "confusion_matrix_metric"]


def classification_metrics(num_classes: int) -> MetricCollection:
    """``{"acc": accuracy, "macro_f1": macro-averaged F1, "auroc": macro one-vs-rest AUROC}``
    over ``num_classes`` classes.

    ``acc`` is the fraction of samples whose arg-max class is the label (micro average);
    ``macro_f1`` is the unweighted mean over classes of ``F1_c = 2 P_c R_c / (P_c + R_c)``, so
    every class counts the same however rare (the metric of multimodal sentiment benchmarks
    such as MVSA); ``auroc`` is the unweighted mean over classes of the area under the ROC curve
    of class ``c`` against the rest, from the softmax probabilities — with two classes, the
    binary AUROC of the positive class (the Hateful Memes challenge metric, Kiela et al. 2020).
    Update with ``(logits (b, K) float, target (b,) int64)``.

    Raises:
        ValueError: ``num_classes < 2``.
    """
    if num_classes < 2:
        raise ValueError(f"classification metrics need num_classes >= 2, got {num_classes}")
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "auroc": MulticlassAUROC(num_classes, average="macro"),
        }
    )


def confusion_matrix_metric(num_classes: int) -> MulticlassConfusionMatrix:
    """The ``(K, K)`` confusion matrix: entry ``[i, j]`` counts samples of class ``i`` predicted as ``j``.

    Raises:
        ValueError: ``num_classes < 2``.
    """
    if num_classes < 2:
        raise ValueError(f"a confusion matrix needs num_classes >= 2, got {num_classes}")
    return MulticlassConfusionMatrix(num_classes)
