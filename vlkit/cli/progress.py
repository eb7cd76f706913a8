"""The terminal progress bar of ``vlkit fit | validate | test``: Lightning's ``RichProgressBar``,
redrawn at most a few times a second instead of after every batch."""

from __future__ import annotations

import time
from typing import Any

from pytorch_lightning.callbacks import RichProgressBar

__all__ = ["ThrottledRichProgressBar"]


class ThrottledRichProgressBar(RichProgressBar):
    """A ``RichProgressBar`` that updates its bars and metrics at most every ``min_interval_s``
    seconds (and at the last batch of each loop), not after every batch.

    Each update reads the logged metrics (a host read per metric) and redraws the terminal; after
    every batch that costs a few milliseconds, several per cent of a short training step. Every
    ``min_interval_s`` it costs the same few milliseconds per interval, under 1 % of a step
    whatever the step's length.

    Args:
        min_interval_s: least seconds between two updates (> 0).
        **kwargs: ``RichProgressBar``'s arguments (``refresh_rate``, ``leave``, ``theme``, ...).

    Raises:
        ValueError: ``min_interval_s <= 0``.
    """

    def __init__(self, min_interval_s: float = 0.5, **kwargs: Any) -> None:
        if min_interval_s <= 0:
            raise ValueError(f"min_interval_s must be > 0, got {min_interval_s}")
        super().__init__(**kwargs)
        self.min_interval_s = min_interval_s
        self._last_update = float("-inf")

    def _due(self, batch_idx: int, total: float | None) -> bool:
        """Whether this batch updates the bar: the loop's last batch, or ``min_interval_s`` passed."""
        now = time.monotonic()
        last = total is not None and total != float("inf") and batch_idx + 1 >= total
        if last or now - self._last_update >= self.min_interval_s:
            self._last_update = now
            return True
        return False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._due(batch_idx, trainer.num_training_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        total = self.total_val_batches_current_dataloader if self.is_enabled else None
        if self._due(batch_idx, total):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        total = self.total_test_batches_current_dataloader if self.is_enabled else None
        if self._due(batch_idx, total):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
