"""Where a run writes and what it shows: run folders, loggers and checkpoints by convention, and the
progress display.

A recipe does not spell out its loggers and checkpoint callbacks: ``vlkit fit`` gives every run
``runs/<run name>/`` (the run name defaults to the recipe file's name), a CSV and a TensorBoard
logger writing ``version_N/`` folders there (a new one for each run), the best checkpoint by the
task's monitored metric (``version_N/checkpoints/best-epoch=N.ckpt``) and
``version_N/checkpoints/last.ckpt``, so no run overwrites another's; ``last.ckpt`` is written at the end of every epoch
and every ``checkpoint_every_n_steps`` training steps (:class:`vlkit.cli.checkpointing.LastCheckpoint`),
and ``--ckpt_path last`` resumes from the newest ``last.ckpt`` of the run's versions
(:func:`latest_checkpoint`); every checkpoint is written atomically
(:class:`vlkit.cli.checkpointing.AtomicCheckpointIO`). A recipe that lists its own loggers,
``ModelCheckpoint`` callbacks or plugins keeps them.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pytorch_lightning import Callback

__all__ = ["EpochLog", "latest_checkpoint", "progress_bar_choice", "resolve_checkpoint", "run_defaults"]

_log = logging.getLogger(__name__)


def run_defaults(
    trainer_config: dict[str, Any], run_folder: Path, monitor: tuple[str, str] | None, every_n_steps: int
) -> dict[str, Any]:
    """Trainer keyword arguments that give a run its folder, loggers and checkpoints.

    Args:
        trainer_config: the trainer's settings as parsed (instantiated callbacks and loggers).
        run_folder: ``<runs_dir>/<run name>``.
        monitor: ``(metric, "max" | "min")`` that picks the best checkpoint (the task's), or None.
        every_n_steps: also write ``last.ckpt`` every this many training steps (0: only per epoch).

    Returns:
        ``default_root_dir`` unless set; ``logger`` (CSV + TensorBoard under the run folder) when
        the recipe leaves it at its default; ``callbacks`` with the checkpoint callbacks and a
        learning-rate monitor appended, unless the recipe has its own.
    """
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from vlkit.cli.checkpointing import AtomicCheckpointIO, LastCheckpoint

    overrides: dict[str, Any] = {}
    if not trainer_config.get("default_root_dir"):
        overrides["default_root_dir"] = str(run_folder)
    if trainer_config.get("logger") in (None, True):
        root, name = str(run_folder.parent.absolute()), run_folder.name  # absolute: checkpoint paths too
        overrides["logger"] = [CSVLogger(root, name=name), TensorBoardLogger(root, name=name)]
    callbacks = _callback_list(trainer_config.get("callbacks"))
    added = []
    if not any(isinstance(c, ModelCheckpoint) for c in callbacks):
        # no folder given: Lightning puts them in the first logger's version_N/checkpoints (or
        # default_root_dir/checkpoints without a logger), so no run overwrites another's
        if monitor is not None:
            metric, mode = monitor
            added.append(
                ModelCheckpoint(
                    monitor=metric, mode=mode, filename="best-{epoch}", enable_version_counter=False
                )
            )
        # last.ckpt after every epoch and every N steps (a killed run loses at most N steps), by one
        # callback that runs after the best one, so it always holds the latest state
        added.append(LastCheckpoint(None, every_n_steps))
    if trainer_config.get("plugins") is None:
        overrides["plugins"] = [AtomicCheckpointIO()]
    if trainer_config.get("logger") is not False and not any(
        isinstance(c, LearningRateMonitor) for c in callbacks
    ):
        added.append(LearningRateMonitor(logging_interval="step"))
    if added:
        overrides["callbacks"] = [*callbacks, *added]
    return overrides


def latest_checkpoint(run_folder: str | os.PathLike[str], name: str = "last.ckpt") -> Path | None:
    """The newest (by modification time) ``name`` among a run's versions,
    ``<run_folder>/version_N/checkpoints/<name>`` (and ``<run_folder>/checkpoints/<name>``, where
    runs without a logger write), or in ``<run_folder>/checkpoints`` of a version folder itself;
    None if there is none."""
    folder = Path(run_folder)
    found = [*folder.glob(f"version_*/checkpoints/{name}"), *folder.glob(f"checkpoints/{name}")]
    return max(found, key=lambda path: path.stat().st_mtime) if found else None


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """What a ``--ckpt_path`` of predict or export names: a checkpoint file or an export folder (one
    with ``vlkit.json``) as given, a run folder (``runs/<recipe>`` or one of its ``version_N``) as
    its newest ``last.ckpt`` (:func:`latest_checkpoint`).

    Raises:
        FileNotFoundError: a folder that is neither an export nor a run with a ``last.ckpt``.
    """
    path = Path(path)
    if not path.is_dir() or (path / "vlkit.json").is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(
            f"{str(path)!r} is neither an export folder (no vlkit.json) nor a run folder with a "
            "version_N/checkpoints/last.ckpt; give a checkpoint file, an export folder or runs/<recipe>"
        )
    _log.info("%s: using %s", path, found)
    return found


def share_run_folder(loggers: list) -> None:
    """Give loggers that share a save_dir and name the same version (one run folder).

    Without this, a CSV and a TensorBoard logger each pick the next free ``version_N``
    and a run is split over two folders.
    """
    if len(loggers) < 2:
        return
    first = loggers[0]
    for logger in loggers[1:]:
        same_root = (getattr(logger, "save_dir", None), getattr(logger, "name", None)) == (
            getattr(first, "save_dir", None),
            getattr(first, "name", None),
        )
        if same_root and hasattr(logger, "_version") and logger._version is None:
            logger._version = first.version


def _in_ci() -> bool:
    """Whether the ``CI`` environment variable is set (to anything but empty, ``0`` or ``false``)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def _callback_list(callbacks: Any) -> list:
    """``--trainer.callbacks`` (``None``, one callback or a list of them) as a new list."""
    if callbacks is None:
        return []
    return list(callbacks) if isinstance(callbacks, (list, tuple)) else [callbacks]


def progress_bar_choice(
    enable_progress_bar: bool | None, callbacks: Any = None
) -> Literal["rich", "off", "user"]:
    """How ``vlkit fit | validate | test`` shows progress, given the trainer's settings.

    Args:
        enable_progress_bar: ``--trainer.enable_progress_bar`` (``None`` when not given).
        callbacks: ``--trainer.callbacks``: a callback, a list of them, or ``None``.

    Returns:
        ``"user"``: leave the trainer as configured, because the user chose: a progress-bar
        callback is among ``callbacks`` (e.g. ``TQDMProgressBar``), or ``enable_progress_bar``
        is false. ``"rich"``: add a ``RichProgressBar``: ``enable_progress_bar`` is true, or
        unset while ``sys.stdout`` is a terminal and ``CI`` is not set. ``"off"``: set
        ``enable_progress_bar`` false (plain logs, metrics still go to the loggers):
        unset while stdout is not a terminal (a pipe, a file, a job log) or ``CI`` is set (to
        anything but empty, ``0`` or ``false``).
    """
    from pytorch_lightning.callbacks import ProgressBar

    if enable_progress_bar is False or any(isinstance(c, ProgressBar) for c in _callback_list(callbacks)):
        return "user"
    if enable_progress_bar:
        return "rich"
    isatty = getattr(sys.stdout, "isatty", None)
    return "rich" if callable(isatty) and isatty() and not _in_ci() else "off"


class EpochLog(Callback):
    """Logs one line per training epoch (``logging``, logger ``vlkit.cli.runs``): the epoch, its
    train and validation metrics and its wall time in seconds, e.g.
    ``epoch 3/8  train/loss 0.052  train/vqa_acc 0.981  val/loss 0.042  val/vqa_acc 0.984  27.1 s``.
    What a job log shows when there is no progress bar."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {
            name.removesuffix("_epoch"): float(value)
            for name, value in trainer.callback_metrics.items()
            if name.startswith(("train/", "val/")) and not name.endswith("_step") and value.numel() == 1
        }
        shown = "  ".join(f"{name} {value:.4g}" for name, value in sorted(metrics.items()))
        seconds = time.perf_counter() - self.start
        _log.info("epoch %d/%d  %s  %.1f s", trainer.current_epoch, trainer.max_epochs, shown, seconds)


def progress_bar_overrides(enable_progress_bar: bool | None, callbacks: Any) -> dict[str, Any]:
    """Trainer keyword arguments that apply :func:`progress_bar_choice` (a new callback list with
    a :class:`vlkit.cli.progress.ThrottledRichProgressBar` appended, ``enable_progress_bar=False``,
    or nothing)."""
    choice = progress_bar_choice(enable_progress_bar, callbacks)
    if choice == "off" or (choice == "user" and enable_progress_bar is False):  # plain logs: a line per epoch
        return {"callbacks": [*_callback_list(callbacks), EpochLog()], "enable_progress_bar": False}
    if choice == "rich":
        from vlkit.cli.progress import ThrottledRichProgressBar

        return {
            "callbacks": [*_callback_list(callbacks), ThrottledRichProgressBar()],
            "enable_progress_bar": True,
        }
    return {}
