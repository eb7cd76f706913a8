"""How a run writes its checkpoints: ``last.ckpt`` that always holds the latest state, written atomically.

- :class:`LastCheckpoint` owns ``last.ckpt``. It writes it every ``every_n_steps`` training steps,
  when an epoch starts (the whole previous epoch done: its validation, callbacks and epoch-end
  scheduler steps) and when training ends, whether or not the monitored metric improved, so that
  ``--ckpt_path last`` resumes from the latest state. No save falls between an epoch's last step
  and the end of that epoch: a checkpoint taken there resumes into an epoch whose validation never
  runs, and one taken at validation's end resumes the next epoch with the previous epoch's sample
  order (Lightning creates the resumed loader before it sets the sampler's epoch).
- :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file in the checkpoint's own
  folder, flushes it to disk (``fsync``) and renames it over the target, so a process killed
  while writing leaves the previous file intact; the temporary files such a kill leaves are
  removed when the next run starts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins import TorchCheckpointIO

from vlkit.tasks.checkpoint import default_file_mode

__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "remove_partial_checkpoints"]

_TEMPORARY_SUFFIX = ".partial"


def remove_partial_checkpoints(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that a killed :class:`AtomicCheckpointIO` write left in ``folder``;
    returns them."""
    found = sorted(Path(folder).glob(f".*.ckpt.*{_TEMPORARY_SUFFIX}")) if Path(folder).is_dir() else []
    for path in found:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return found


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoint IO, made atomic: temporary file in the same folder,
    ``fsync``, ``os.replace``. The file gets the usual mode (``0o666`` less the umask)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options (got {storage_options!r})")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=_TEMPORARY_SUFFIX, dir=target.parent
        )
        try:
            with os.fdopen(handle, "wb") as file:
                torch.save(checkpoint, file)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, default_file_mode())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        with contextlib.suppress(OSError):  # the rename itself survives a power cut (POSIX)
            folder = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` in ``dirpath`` every ``every_n_steps`` training steps (0: never mid-epoch;
    never on an epoch's last step), at the start of every epoch after the first (the state of the
    finished epoch before) and at the end of training, whatever the monitored metric did. Keeps no
    other checkpoint (see the module's docstring for why these moments).
    """

    def __init__(self, dirpath: str | os.PathLike[str], every_n_steps: int = 0) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0 (0: only at the end of epochs), got {every_n_steps}")
        super().__init__(dirpath=dirpath, save_top_k=0, save_last=True, enable_version_counter=False)
        self.every_n_steps = every_n_steps
        self._at_epoch_start = False

    @property
    def state_key(self) -> str:
        return self._generate_state_key(dirpath=self.dirpath, last=True, every_n_steps=self.every_n_steps)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and trainer.is_global_zero and self.dirpath:
            remove_partial_checkpoints(self.dirpath)

    def _can_save(self, trainer: Any) -> bool:
        from pytorch_lightning.trainer.states import TrainerFn

        return not trainer.fast_dev_run and trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking

    def _save_last(self, trainer: Any) -> None:
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if not self.every_n_steps or not self._can_save(trainer) or trainer.global_step % self.every_n_steps:
            return
        if trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            return  # the next save is at the next epoch's start
        self._save_last(trainer)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        # the state of the finished epoch before (after its validation, its callbacks and its
        # epoch-end scheduler steps): Lightning resumes from it at the start of this epoch
        if trainer.current_epoch > 0 and self._can_save(trainer):
            self._at_epoch_start = True
            try:
                self._save_last(trainer)
            finally:
                self._at_epoch_start = False

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._can_save(trainer):  # the last epoch has no next start
            self._save_last(trainer)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> Any:
        """In a save at an epoch's start, leave out the training loader's position (the end of the
        epoch before, which a resumed run would apply to the new epoch's order) and set the epoch's
        step counters to zero (the epoch loop resets them only after this hook; a resumed run would
        take the epoch for done)."""
        state = super().on_save_checkpoint(trainer, pl_module, checkpoint)
        if self._at_epoch_start:
            fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
            fit_loop.get("state_dict", {}).pop("combined_loader", None)
            for key, progress in fit_loop.items():  # the new epoch's counters, as its loop resets them
                if key.startswith("epoch_loop.") and isinstance(progress, dict) and "current" in progress:
                    progress["current"] = {name: 0 for name in progress["current"]}
                    if "is_last_batch" in progress:
                        progress["is_last_batch"] = False
        return state
