"""VQA accuracy and exact match on hand-computed cases."""

import pytest
import torch

from vlkit.metrics import ExactMatchAccuracy, VQAAccuracy


def test_vqa_accuracy_is_the_mean_soft_score_of_the_predictions():
    scores = torch.tensor([[1.0, 2 / 3, 0.0], [1 / 3, 0.0, 1.0], [0.0, 0.0, 0.0]])
    metric = VQAAccuracy()
    metric.update(torch.tensor([1, 2, 0]), scores)  # 2/3, 1, 0
    assert metric.compute().item() == pytest.approx((2 / 3 + 1 + 0) / 3)
    metric.update(torch.tensor([0]), torch.tensor([[1 / 3, 1.0, 0.0]]))  # accumulates over batches
    assert metric.compute().item() == pytest.approx((2 / 3 + 1 + 0 + 1 / 3) / 4)


def test_exact_match_counts_out_of_vocabulary_labels_as_wrong():
    metric = ExactMatchAccuracy()
    metric.update(torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 1, -100]))
    assert metric.compute().item() == pytest.approx(0.5)


@pytest.mark.parametrize("metric", [VQAAccuracy(), ExactMatchAccuracy()])
def test_metrics_reject_bad_shapes(metric):
    with pytest.raises(ValueError, match="preds must be"):
        metric.update(torch.rand(3), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="batch size"):
        metric.update(torch.tensor([0, 1]), torch.zeros(3, 2).long())
