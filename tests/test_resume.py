"""Resume: a run killed with SIGKILL (mid-epoch, at an epoch boundary, between an epoch's last step and
its validation) and resumed with ``--ckpt_path last`` ends where an uninterrupted run ends; checkpoints
are written atomically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from tests.conftest import make_dataset_dict
from tests.subprocess_runs import ROOT, epoch_metrics, run_python

BATCHES_PER_EPOCH = 6  # 24 training questions, batch 4


class KillAtStep(pl.Callback):
    """Kills its own process with SIGKILL (nothing is flushed or saved) when training reaches ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


class KillAtValidation(pl.Callback):
    """Kills its own process with SIGKILL when epoch ``epoch``'s validation starts (after its last step)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), signal.SIGKILL)


def fit(tmp_path: Path, name: str, *extra: str) -> subprocess.CompletedProcess:
    """``vlkit fit`` of the parallel co-attention recipe, 3 epochs on the tiny dataset, in a subprocess."""
    args = ["-m", "vlkit.cli", "fit", "--config", str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml")]
    args += ["--config", str(tmp_path / f"{name}.yaml"), "--data.init_args.dataset", str(tmp_path / "data")]
    return run_python([*args, *extra], tmp_path)


def write_config(tmp_path: Path, config_name: str, run_name: str, kill: dict | None) -> None:
    """The recipe with ``last.ckpt`` every 2 steps (and the ``kill`` callback), run ``run_name``."""
    callbacks = [kill] if kill is not None else []
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


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """A folder with the data and the uninterrupted run ``runs/whole``."""
    folder = tmp_path_factory.mktemp("resume")
    make_dataset_dict().save_to_disk(str(folder / "data"))
    write_config(folder, "whole", "whole", None)
    whole = fit(folder, "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    return folder


KILLS = {  # where the run is killed; it has then logged the validation metrics of epoch 0 only
    "mid-epoch": {"class_path": "tests.test_resume.KillAtStep", "init_args": {"step": 9}},
    "epoch boundary": {"class_path": "tests.test_resume.KillAtStep", "init_args": {"step": BATCHES_PER_EPOCH}},
    # after the second epoch's last step (a step save falls on it) and before its validation
    "before validation": {"class_path": "tests.test_resume.KillAtValidation", "init_args": {"epoch": 1}},
}


@pytest.mark.parametrize("kill", KILLS)
def test_sigkill_then_resume_from_last_matches_an_uninterrupted_run(kill, uninterrupted, tmp_path):
    (tmp_path / "data").symlink_to(uninterrupted / "data")
    # one best checkpoint and the one last.ckpt beside it (no last-v1.ckpt, no temporary file)
    saved = sorted(p.name for p in (uninterrupted / "runs/whole/version_0/checkpoints").iterdir())
    assert len(saved) == 2 and saved[0].startswith("best-epoch=") and saved[1] == "last.ckpt", saved
    write_config(tmp_path, "killed", "killed", KILLS[kill])
    write_config(tmp_path, "resumed", "killed", None)

    killed = fit(tmp_path, "killed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (tmp_path / "runs/killed/version_0/checkpoints/last.ckpt").is_file()
    assert set(epoch_metrics(tmp_path / "runs/killed/version_0")) == {0}

    resumed = fit(tmp_path, "resumed", "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restored all states from the checkpoint" in resumed.stderr
    expected = epoch_metrics(uninterrupted / "runs/whole/version_0")
    got = epoch_metrics(tmp_path / "runs/killed/version_1")  # the resumed run logs to a new version
    assert set(expected) == {0, 1, 2, "test"} and set(got) == {1, 2, "test"}, sorted(got, key=str)
    for key in (1, 2, "test"):
        assert expected[key] and set(got[key]) == set(expected[key])
        for metric, value in expected[key].items():
            # same batches, dropout masks and flips: equal up to float summation order
            assert got[key][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, metric)


KILL_WHILE_SAVING = """
import os, signal, sys, torch
from vlkit.cli.checkpointing import AtomicCheckpointIO

def half_then_kill(obj, file):  # a process killed half-way through writing the new checkpoint
    file.write(b"x" * 1000)
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = half_then_kill
AtomicCheckpointIO().save_checkpoint({"step": 2}, sys.argv[1])
"""


def test_a_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    from vlkit.cli.checkpointing import AtomicCheckpointIO, LastCheckpoint

    target = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, target)
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    killed = subprocess.run([sys.executable, "-c", KILL_WHILE_SAVING, str(target)], cwd=ROOT, check=False)
    assert killed.returncode == -signal.SIGKILL
    assert torch.load(target, weights_only=True) == {"step": 1}  # intact
    partial = [p for p in target.parent.iterdir() if p.name != "last.ckpt"]
    assert len(partial) == 1 and partial[0].name.startswith(".last.ckpt.")
    # the next run removes what the killed write left
    callback = LastCheckpoint(target.parent, every_n_steps=2)
    callback.setup(pl.Trainer(logger=False, enable_checkpointing=False), pl.LightningModule(), "fit")
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
