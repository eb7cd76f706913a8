"""Distributed training: ``vlkit fit`` with Lightning's DDP on 2 CPU processes (gloo) gives the
validation and test metrics of 1 process whose batch is twice as large, and every validation and
test sample is counted once (none left out, none repeated to even the processes' shares).

Why they can match: each process takes interleaved slices of the same training permutation, so
the union of the 2 batches of step ``t`` is the 1-process batch of step ``t``; the per-process
batches are equal in size (24 questions, 3 steps of 2 × 4), so DDP's average of the 2 gradients
is the gradient of the 8-sample batch, and the learning-rate schedule has the same length.
What is left is the order of float sums. Randomness drawn by each process is turned off: dropout
(each process would draw its own masks) and flips (each process would flip its own images).

The 23 validation questions are shared 12 / 11, so the synced ``val/loss`` is a mean over unequal
shares (which Lightning 2.6 gets wrong with integer batch sizes, issue #21859; see
``TrainingTask.log_loss``). The strategy is ``ddp``, what a user runs: Lightning starts the second
process by running the same ``python -m vlkit.cli fit ...`` command again.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from tests.conftest import make_dataset_dict
from tests.subprocess_runs import ROOT, epoch_metrics, run_python

RECIPE = ROOT / "recipes/vqa/easy_vqa_parallel.yaml"
# questions per split (12 images, 2 questions each, one validation question left out): an odd
# number, so the 2 processes evaluate 12 and 11 and a sampler that pads the shares is caught
SAMPLES = {"val": 23, "test": 24}
BATCH = 4  # per process with 2 processes; 1 process gets 2 * BATCH
# Measured: the accuracies and counts are equal, the losses differ by at most 1.6e-7 relative
# (float32 summation order); the tolerance leaves a margin of 60x.
RTOL, ATOL = 1e-5, 1e-7


class CountEvaluated(pl.Callback):
    """Logs ``<split>/samples_seen`` (the samples that all processes evaluated, summed over them)
    and ``<split>/{vqa_acc,exact_match}_count`` (how many answers the synced metrics scored) at the
    end of each validation and test epoch."""

    def __init__(self) -> None:
        self.seen = 0

    def _count(self, batch) -> None:
        self.seen += int(batch.label.shape[0])

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, split: str) -> None:
        seen = trainer.strategy.reduce(torch.tensor(float(self.seen)), reduce_op="sum")
        self.seen = 0
        counts = {f"{split}/samples_seen": float(seen)}
        for name in ("vqa_acc", "exact_match"):
            metric = getattr(pl_module, name)[f"{split}_"]
            with metric.sync_context():  # the states every process sees when the metric is computed
                counts[f"{split}/{name}_count"] = float(metric.count)
        # equal on every process already; "max" keeps them (and silences Lightning's sync_dist warning)
        pl_module.log_dict(counts, on_step=False, on_epoch=True, sync_dist=True, reduce_fx="max")

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._count(batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._count(batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            self.seen = 0
        else:
            self._log(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._log(trainer, pl_module, "test")


def write_config(tmp_path: Path, name: str, batch_size: int) -> Path:
    """Overrides of the recipe: 2 epochs on the tiny dataset at 32 px, no dropout, no flips, the
    best checkpoint (tested after fit) in the run's folder, only a CSV logger."""
    recipe = yaml.safe_load(RECIPE.read_text())["model"]["init_args"]
    config = {
        "run_name": name,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 2,
            "deterministic": True,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
            "logger": [
                {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": "runs", "name": name},
                }
            ],
            "callbacks": [{"class_path": "tests.test_distributed.CountEvaluated"}],
        },
        "model": {
            "init_args": {
                "fusion": {**recipe["fusion"], "dropout": 0.0},
                "head": {**recipe["head"], "dropout": 0.0},
            }
        },
        "data": {
            "init_args": {
                "dataset": str(tmp_path / "data"),
                "image_column": "img",
                "question_column": "q",
                "answer_column": "answers",
                "image_size": 32,
                "batch_size": batch_size,
                "num_workers": 0,
                "augment": False,
            }
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def fit(tmp_path: Path, name: str, batch_size: int, *trainer_args: str) -> subprocess.CompletedProcess:
    """``vlkit fit`` of the recipe with the overrides of :func:`write_config`, in a subprocess."""
    config = write_config(tmp_path, name, batch_size)
    return run_python(
        ["-m", "vlkit.cli", "fit", "--config", str(RECIPE), "--config", str(config), *trainer_args], tmp_path
    )


def test_ddp_on_2_processes_matches_1_process_with_the_global_batch(tmp_path):
    data = make_dataset_dict()
    data["validation"] = data["validation"].select(range(SAMPLES["val"]))
    data.save_to_disk(str(tmp_path / "data"))
    one = fit(tmp_path, "one", 2 * BATCH, "--trainer.devices", "1")
    assert one.returncode == 0, one.stderr[-3000:]
    two = fit(tmp_path, "two", BATCH, "--trainer.devices", "2", "--trainer.strategy", "ddp")
    assert two.returncode == 0, two.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in two.stderr

    expected, got = (
        epoch_metrics(tmp_path / "runs/one/version_0"),
        epoch_metrics(tmp_path / "runs/two/version_0"),
    )
    assert set(expected) == set(got) == {0, 1, "test"}
    for key, metrics in expected.items():
        split = "test" if key == "test" else "val"
        # each sample evaluated once, and each scored once by the synced metrics: not 2x, not 1/2
        for count in ("samples_seen", "vqa_acc_count", "exact_match_count"):
            assert got[key][f"{split}/{count}"] == metrics[f"{split}/{count}"] == SAMPLES[split], (key, count)
        assert {f"{split}/{m}" for m in ("loss", "vqa_acc", "exact_match")} <= set(metrics)
        assert set(got[key]) == set(metrics), key
        for metric, value in metrics.items():
            # same global batches, averaged gradients: equal up to float summation order
            assert got[key][metric] == pytest.approx(value, rel=RTOL, abs=ATOL), (key, metric, value)
