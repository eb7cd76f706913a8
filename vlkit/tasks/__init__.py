"""LightningModules: the only place that trains; they also own inference (``predict``)."""

from vlkit.tasks.base import TrainingTask
from vlkit.tasks.captioning import CaptioningTask, CaptionPrediction
from vlkit.tasks.checkpoint import load_checkpoint
from vlkit.tasks.loading import TASKS, load_pretrained, load_task
from vlkit.tasks.optimization import Optimization, warmup_cosine
from vlkit.tasks.sentiment import SentimentPrediction, SentimentTask
from vlkit.tasks.vqa import VQAPrediction, VQATask

__all__ = [
    "TASKS",
    "CaptionPrediction",
    "CaptioningTask",
    "Optimization",
    "SentimentPrediction",
    "SentimentTask",
    "TrainingTask",
    "VQAPrediction",
    "VQATask",
    "load_checkpoint",
    "load_pretrained",
    "load_task",
    "warmup_cosine",
]
