"""Resume: a run killed with SIGKILL mid-epoch and resumed with ``--ckpt_path last`` ends where
an uninterrupted run ends."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
import pytorch_lightning as pl
import yaml

from tests.conftest import make_dataset_dict
from tests.subprocess_runs import ROOT, epoch_metrics, run_python

BATCHES_PER_EPOCH = 6  # 24 training questions, batch 4
KILL_AT_STEP = 9  # in the middle of the second epoch


class KillAtStep(pl.Callback):
    """Kills its own process with SIGKILL (nothing is flushed or saved) when training reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def fit(tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    """``vlkit fit`` of the parallel co-attention recipe, 3 epochs on the tiny dataset, in a subprocess."""
    args = ["-m", "vlkit.cli", "fit", "--config", str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml")]
    args += ["--config", str(tmp_path / f"{name}.yaml"), "--data.init_args.dataset", str(tmp_path / "data")]
    return run_python([*args, *extra], tmp_path)


def write_config(tmp_path: Path, config_name: str, run_name: str, kill_at: int | None) -> None:
    """The recipe with ``last.ckpt`` every 2 steps (and a kill at step ``kill_at``), run ``run_name``."""
    callbacks = []
    if kill_at is not None:
        callbacks.append({"class_path": "tests.test_resume.KillAtStep", "init_args": {"step": kill_at}})
    config = {
        "run_name": run_name,
        "checkpoint_every_n_steps": 2,
        "trainer": {
            "max_epochs": 3,
            "deterministic": True,
            "enable_progress_bar": False,
            "logger": [
                {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": "runs", "name": run_name},
                }
            ],
            "callbacks": callbacks,
        },
        "data": {
            "init_args": {
                "image_column": "img",
                "question_column": "q",
                "answer_column": "answers",
                "image_size": 32,
                "batch_size": 4,
                "num_workers": 1,
                "augment": True,
            }
        },
    }
    (tmp_path / f"{config_name}.yaml").write_text(yaml.safe_dump(config))


def test_sigkill_mid_epoch_then_resume_from_last_matches_an_uninterrupted_run(tmp_path):
    make_dataset_dict().save_to_disk(str(tmp_path / "data"))
    write_config(tmp_path, "whole", "whole", None)
    write_config(tmp_path, "killed", "killed", KILL_AT_STEP)
    write_config(tmp_path, "resumed", "killed", None)

    whole = fit(tmp_path, "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    # both checkpoint callbacks write the one last.ckpt (no last-v1.ckpt beside it), one best
    saved = sorted(p.name for p in (tmp_path / "runs/whole/checkpoints").iterdir())
    assert len(saved) == 2 and saved[0].startswith("best-epoch=") and saved[1] == "last.ckpt", saved

    killed = fit(tmp_path, "killed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (tmp_path / "runs/killed/checkpoints/last.ckpt").is_file()
    # the killed run got past the first epoch's validation but not the second's
    assert set(epoch_metrics(tmp_path / "runs/killed/version_0")) == {0}

    resumed = fit(tmp_path, "resumed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stderr
    expected = epoch_metrics(tmp_path / "runs/whole/version_0")
    got = epoch_metrics(tmp_path / "runs/killed/version_1")  # the resumed run logs to a new version
    assert set(expected) == {0, 1, 2, "test"} and set(got) == {1, 2, "test"}
    for key in (1, 2, "test"):
        assert expected[key] and set(got[key]) == set(expected[key])
        for metric, value in expected[key].items():
            # same batches, dropout masks and flips: equal up to float summation order
            assert got[key][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, metric)
