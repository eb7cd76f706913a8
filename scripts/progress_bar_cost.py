"""What the terminal progress bar costs per training step of the base recipe.

Usage:
    python scripts/progress_bar_cost.py [--recipe recipes/vqa/easy_vqa_parallel.yaml] [--steps 200]
        [--repeats 3]

Trains ``--steps`` steps of one epoch (no validation, no test, the recipe's data with its
feature cache) with no progress bar, with Lightning's ``RichProgressBar`` (redrawn after every
batch) and with vlkit's ``ThrottledRichProgressBar`` (at most every 0.5 s), each drawing as on
a terminal (``force_terminal``) into ``/dev/null``, the three interleaved ``--repeats`` times,
and prints the median seconds per step and each bar's cost as a share of the step without a
bar. Run it with nothing else on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pytorch_lightning import Callback
from pytorch_lightning.callbacks import RichProgressBar

from vlkit.cli import cli_main
from vlkit.cli.progress import ThrottledRichProgressBar

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(
    0, str(ROOT / "scripts")
)  # the callbacks are named progress_bar_cost.<class> on the command line


class StepTimer(Callback):
    """Seconds of the training loop (first to last batch), for the steps after the first 10."""

    def __init__(self) -> None:
        self.start = self.end = None
        self.steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 9:
            self.start = time.perf_counter()
        self.end, self.steps = time.perf_counter(), batch_idx - 9


_TERMINAL = {"force_terminal": True, "width": 120}


class TerminalRichBar(RichProgressBar):
    """Lightning's bar, redrawn after every batch, drawing as on a terminal into /dev/null."""

    def __init__(self) -> None:
        super().__init__(console_kwargs={**_TERMINAL, "file": open(os.devnull, "w")})  # noqa: SIM115


class TerminalThrottledBar(ThrottledRichProgressBar):
    """vlkit's bar (at most every 0.5 s), drawing as on a terminal into /dev/null."""

    def __init__(self) -> None:
        super().__init__(console_kwargs={**_TERMINAL, "file": open(os.devnull, "w")})  # noqa: SIM115


BARS = {"none": [], "rich": ["--trainer.callbacks+=progress_bar_cost.TerminalRichBar"]}
BARS["throttled"] = ["--trainer.callbacks+=progress_bar_cost.TerminalThrottledBar"]


def seconds_per_step(recipe: str, steps: int, bar: str, workdir: str) -> float:
    """The training loop's seconds per step after its first 10 steps, with ``bar``."""
    args = [
        "fit",
        "--config",
        recipe,
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        str(steps),
    ]
    args += ["--trainer.limit_val_batches", "0", "--test_after_fit", "false", "--runs_dir", workdir]
    args += ["--trainer.enable_progress_bar", "false" if bar == "none" else "true"]
    args += ["--trainer.callbacks+=progress_bar_cost.StepTimer", *BARS[bar]]
    cli = cli_main(args)
    (timer,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "StepTimer"]
    return (timer.end - timer.start) / timer.steps


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args(argv)
    times: dict[str, list[float]] = {"none": [], "rich": [], "throttled": []}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(opts.repeats):
            for bar, values in times.items():
                values.append(seconds_per_step(opts.recipe, opts.steps, bar, workdir))
    medians = {bar: statistics.median(values) for bar, values in times.items()}
    print("| progress bar | ms / step | cost vs no bar |\n|---|---|---|")
    for bar, value in medians.items():
        print(f"| {bar} | {value * 1e3:.1f} | {(value / medians['none'] - 1) * 100:+.1f} % |")
    sys.stdout.flush()
    return medians


if __name__ == "__main__":
    main()
