"""Self-contained checkpoints, loaded safely.

A checkpoint written by a vlkit task carries, besides the weights: the task (``vlkit_task``),
the model's configuration and the vocabularies (its hyper-parameters), and, for every Hugging
Face model or tokenizer the task uses, that model's ``config.json`` and tokenizer files
(``vlkit_hf_files``; no weights, which are in the state dict). :func:`load_task` rebuilds the
task from the checkpoint alone: no Hub download, no packaged weights (the image backbone is
built without its pretrained weights, the text encoder from its saved configuration), and
only ``torch.load(weights_only=True)`` (a checkpoint that holds code is refused).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "hf_files",
    "load_checkpoint",
    "load_pretrained",
    "load_task",
    "rebuilding_from_checkpoint",
    "saved_hf_folder",
]

# while a task is rebuilt from a checkpoint: {Hugging Face name: local folder of its saved files}
_REBUILDING: ContextVar[dict[str, str] | None] = ContextVar("vlkit_rebuilding", default=None)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint file with ``torch.load(weights_only=True)`` on the CPU.

    Raises:
        FileNotFoundError: no such file.
        pickle.UnpicklingError: the file holds more than tensors and plain containers (e.g.
            code that would run when unpickled): it is refused, not executed.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint {os.fspath(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=True)


def hf_files(names: Iterable[str]) -> dict[str, dict[str, bytes]]:
    """``{name: {file name: bytes}}``: the configuration and tokenizer files of Hugging Face models.

    Args:
        names: Hub ids or local folders (the packaged MiniLM's id resolves to its package).
    """
    from transformers import AutoConfig, AutoTokenizer

    from vlkit.text.hf import resolve_hf_model

    result: dict[str, dict[str, bytes]] = {}
    for name in sorted(set(names)):
        path = saved_hf_folder(name) or resolve_hf_model(name)
        with tempfile.TemporaryDirectory() as folder:
            AutoConfig.from_pretrained(path).save_pretrained(folder)
            with contextlib.suppress(OSError, ValueError):  # a model may come without a tokenizer
                AutoTokenizer.from_pretrained(path).save_pretrained(folder)
            result[name] = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    return result


@contextlib.contextmanager
def rebuilding_from_checkpoint(files: dict[str, dict[str, bytes]]) -> Iterator[None]:
    """While active, vlkit builds models as :func:`load_task` needs: image backbones without
    pretrained weights, Hugging Face tokenizers and text encoders from ``files`` (see
    :func:`hf_files`; the encoders' weights come from the state dict afterwards)."""
    with tempfile.TemporaryDirectory() as root:
        folders = {}
        for i, (name, named_files) in enumerate(files.items()):
            folder = Path(root) / str(i)
            folder.mkdir()
            for file_name, data in named_files.items():
                (folder / Path(file_name).name).write_bytes(data)
            folders[name] = str(folder)
        token = _REBUILDING.set(folders)
        try:
            yield
        finally:
            _REBUILDING.reset(token)


def rebuilding() -> bool:
    """Whether a task is being rebuilt from a checkpoint (see :func:`rebuilding_from_checkpoint`)."""
    return _REBUILDING.get() is not None


def saved_hf_folder(name: str) -> str | None:
    """While rebuilding from a checkpoint: the local folder of ``name``'s saved files, else None."""
    folders = _REBUILDING.get()
    return None if folders is None else folders.get(name)


def load_task(path: str | os.PathLike[str]) -> Any:
    """The vlkit task (:class:`vlkit.tasks.VQATask`, ``CaptioningTask`` or ``SentimentTask``) of a
    checkpoint, in eval mode on the CPU, rebuilt from the checkpoint alone (see the module).

    Raises:
        FileNotFoundError: no such file.
        pickle.UnpicklingError: a checkpoint that holds code (refused, not run).
        ValueError: not a checkpoint written by a vlkit task.
    """
    from vlkit.tasks import CaptioningTask, SentimentTask, VQATask

    checkpoint = load_checkpoint(path)
    if "state_dict" not in checkpoint or "hyper_parameters" not in checkpoint:
        raise ValueError(f"{os.fspath(path)!r} is not a Lightning checkpoint of a vlkit task")
    tasks = {"vqa": VQATask, "captioning": CaptioningTask, "sentiment": SentimentTask}
    task_class = tasks.get(checkpoint.get("vlkit_task", "vqa"))
    if task_class is None:
        raise ValueError(f"unknown vlkit_task {checkpoint['vlkit_task']!r} in {os.fspath(path)!r}")
    files = checkpoint.get("vlkit_hf_files", {})
    with rebuilding_from_checkpoint(files):
        task = task_class.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    task._hf_files_cache = files  # saved again as they came, without fetching anything
    task.data_settings = checkpoint.get("datamodule_hyper_parameters", {})
    return task.eval()


def load_pretrained(folder_or_repo: str | os.PathLike[str]) -> Any:
    """The vlkit task saved with ``save_pretrained`` (or ``vlkit export``) in a folder or Hub
    repository, whichever task it is (``vlkit.json`` names it); see
    :meth:`vlkit.tasks.TrainingTask.from_pretrained`.

    Raises:
        FileNotFoundError: a local folder without ``vlkit.json``.
        ValueError: an unknown task in ``vlkit.json``.
    """
    import json

    from huggingface_hub import hf_hub_download

    from vlkit.tasks import CaptioningTask, SentimentTask, VQATask

    source = os.fspath(folder_or_repo)
    if os.path.isdir(source):
        info_path = Path(source) / "vlkit.json"
        if not info_path.is_file():
            raise FileNotFoundError(f"{source!r} has no vlkit.json: not saved by vlkit's save_pretrained")
    else:
        info_path = Path(hf_hub_download(repo_id=source, filename="vlkit.json"))
    task_name = json.loads(info_path.read_text())["task"]
    tasks = {"vqa": VQATask, "captioning": CaptioningTask, "sentiment": SentimentTask}
    if task_name not in tasks:
        raise ValueError(f"unknown task {task_name!r} in {os.fspath(info_path)!r}")
    return tasks[task_name].from_pretrained(source)
