"""LightningModules: the only place that trains."""

from vlkit.tasks.captioning import CaptioningTask
from vlkit.tasks.common import TrainingTask, warmup_cosine
from vlkit.tasks.sentiment import SentimentTask
from vlkit.tasks.vqa import VQATask

__all__ = ["CaptioningTask", "SentimentTask", "TrainingTask", "VQATask", "warmup_cosine"]
