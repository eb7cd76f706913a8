"""LightningModules: the only place that trains."""

from vlkit.tasks.vqa import VQATask

__all__ = ["VQATask"]
