"""LightningModules: the only place that trains."""

from vlkit.tasks.captioning import CaptioningTask
from vlkit.tasks.common import TrainingTask, warmup_cosine
from vlkit.tasks.vqa import VQATask

__all__ = ["CaptioningTask", "TrainingTask", "VQATask", "warmup_cosine"]
