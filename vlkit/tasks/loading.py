"""Load any task, whichever it is, from a checkpoint or a ``save_pretrained`` folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlkit.tasks.base import TrainingTask
from vlkit.tasks.captioning import CaptioningTask
from vlkit.tasks.checkpoint import load_checkpoint
from vlkit.tasks.sentiment import SentimentTask
from vlkit.tasks.vqa import VQATask

__all__ = ["TASKS", "load_pretrained", "load_task"]

#: The task classes by their ``task_name`` (``vlkit_task`` in checkpoints, ``task`` in ``vlkit.json``).
TASKS: dict[str, type[TrainingTask]] = {
    cls.task_name: cls for cls in (VQATask, CaptioningTask, SentimentTask)
}


def _task_class(name: object, source: str) -> type[TrainingTask]:
    if name not in TASKS:
        raise ValueError(f"{source} names the task {name!r}; vlkit's tasks are {sorted(TASKS)}")
    return TASKS[name]


def load_task(path: str | os.PathLike[str]) -> TrainingTask:
    """The task (:class:`VQATask`, :class:`CaptioningTask` or :class:`SentimentTask`) of a checkpoint
    written by ``vlkit fit``, rebuilt from the file alone (no Hub download, no packaged weights;
    see :meth:`TrainingTask.from_checkpoint`), in eval mode on the CPU.

    Raises:
        FileNotFoundError: no such file.
        pickle.UnpicklingError: a checkpoint that holds code (refused, not run).
        ValueError: not a checkpoint written by a vlkit task, or one written by an earlier vlkit.
    """
    checkpoint = load_checkpoint(path)
    source = f"checkpoint {os.fspath(path)!r}"
    if "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise ValueError(f"{source} is not a Lightning checkpoint of a vlkit task")
    return _task_class(checkpoint.get("vlkit_task", "vqa"), source).from_checkpoint(path, checkpoint)


def load_pretrained(folder_or_repo: str | os.PathLike[str]) -> TrainingTask:
    """The task saved with ``save_pretrained`` (or ``vlkit export``) in a folder or Hub repository,
    whichever task it is (``vlkit.json`` names it); see :meth:`TrainingTask.from_pretrained`.

    Raises:
        FileNotFoundError: a local folder without ``vlkit.json``.
        ValueError: an unknown task in ``vlkit.json``, or a folder written by an earlier vlkit.
    """
    from huggingface_hub import hf_hub_download

    source = os.fspath(folder_or_repo)
    if os.path.isdir(source):
        info_path = Path(source) / "vlkit.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{source!r} has no vlkit.json: not saved by vlkit's save_pretrained")
    else:
        info_path = Path(hf_hub_download(repo_id=source, filename="vlkit.json"))
    task_name = json.loads(info_path.read_text()).get("task")
    return _task_class(task_name, os.fspath(info_path)).from_pretrained(source)
