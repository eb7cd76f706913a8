"""Metrics (torchmetrics style)."""

from vlkit.metrics.vqa import ExactMatchAccuracy, VQAAccuracy

__all__ = ["ExactMatchAccuracy", "VQAAccuracy"]
