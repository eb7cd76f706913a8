"""``vlkit report`` (vlkit.report) on synthetic CSVLogger runs and on a real 1-epoch fit; the
progress-bar rule of ``vlkit fit`` (vlkit.cli.progress_bar_choice)."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image
from pytorch_lightning.callbacks import ModelCheckpoint, RichProgressBar, TQDMProgressBar

from tests.subprocess_runs import run_python
from tests.test_cli import TINY, short_fit
from vlkit.cli import main, progress_bar_choice, progress_bar_overrides
from vlkit.cli.runs import EpochLog
from vlkit.report import find_run_dir, read_metrics, write_report

# per validated epoch: (val/loss, val/vqa_acc, train/loss_epoch, train/vqa_acc); the accuracy peaks at
# epoch 2 (tied by epoch 3: the earlier one is best, as ModelCheckpoint keeps it), the loss at epoch 1
EPOCHS = [(0.9, 0.5, 1.2, 0.4), (0.4, 0.7, 0.8, 0.6), (0.6, 0.8, 0.5, 0.8), (0.7, 0.8, 0.3, 0.9)]
STEPS_PER_EPOCH = 4
TEST = {"test/loss": 0.65, "test/vqa_acc": 0.79, "test/skipped": 0.0}
COLUMNS = [
    "epoch",
    "lr-AdamW",
    "step",
    *sorted(TEST),
    "train/loss_epoch",
    "train/loss_step",
    "train/vqa_acc",
    "val/loss",
    "val/skipped",
    "val/vqa_acc",
]


def write_metrics(run: Path, epochs=EPOCHS, test: dict | None = TEST, validate: bool = True) -> Path:
    """A ``metrics.csv`` laid out as Lightning's CSVLogger writes it: one row per log call, columns
    sorted, empty cells for what a row does not log (an lr row has no epoch)."""
    rows = []
    for epoch, (val_loss, val_acc, train_loss, train_acc) in enumerate(epochs):
        last = (epoch + 1) * STEPS_PER_EPOCH - 1
        for step in range(epoch * STEPS_PER_EPOCH + 1, last + 1, 2):
            rows.append({"step": step, "lr-AdamW": 0.001})
            rows.append({"epoch": epoch, "step": step, "train/loss_step": train_loss + 0.1 * (step % 3)})
        if validate:
            row = {"epoch": epoch, "step": last, "val/loss": val_loss, "val/vqa_acc": val_acc}
            rows.append({**row, "val/skipped": 0.0})
        rows.append(
            {"epoch": epoch, "step": last, "train/loss_epoch": train_loss, "train/vqa_acc": train_acc}
        )
    if test:
        rows.append({"epoch": len(epochs), "step": len(epochs) * STEPS_PER_EPOCH, **test})
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return run


def write_config(run: Path, monitor: str | None, mode: str = "max") -> None:
    """The ``config.yaml`` LightningCLI saves: a step checkpoint without monitor, then the best one."""
    callbacks = [
        {"class_path": "pytorch_lightning.callbacks.ModelCheckpoint", "init_args": {"monitor": None}},
        {"class_path": "pytorch_lightning.callbacks.LearningRateMonitor", "init_args": {}},
        {
            "class_path": "pytorch_lightning.callbacks.ModelCheckpoint",
            "init_args": {"monitor": monitor, "mode": mode},
        },
    ]
    (run / "config.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))


def test_report_writes_curves_and_the_best_epoch_of_the_checkpoint_monitor(tmp_path):
    run = write_metrics(tmp_path / "runs" / "easy_vqa" / "version_0")
    write_config(run, "val/vqa_acc", "max")
    out = tmp_path / "report"
    summary = write_report(run, out)

    assert (summary["monitor"], summary["mode"], summary["monitor_from"]) == (
        "val/vqa_acc",
        "max",
        "config.yaml",
    )
    assert summary["best_epoch"] == 2 and summary["best_step"] == 3 * STEPS_PER_EPOCH - 1
    assert summary["validations"] == 4
    assert summary["val"] == {"val/loss": 0.6, "val/skipped": 0.0, "val/vqa_acc": 0.8}
    assert summary["test"] == TEST
    with Image.open(out / "learning_curves.png") as figure:
        # three panels (training loss, loss, vqa_acc) side by side, 4.2 × 3 inches each at 100 dpi
        assert figure.format == "PNG" and figure.size == (1260, 300)
    assert json.loads((out / "summary.json").read_text()) == summary
    markdown = (out / "summary.md").read_text()
    assert "| metric | val (epoch 2) | test |" in markdown
    assert "| vqa_acc | 0.8000 | 0.7900 |" in markdown and "| skipped | 0 | 0 |" in markdown
    assert not (run / "summary.json").exists()  # --out, not the run folder


@pytest.mark.parametrize(
    ("config", "argument", "expected"),
    [
        (("val/loss", "min"), {}, ("val/loss", "min", "config.yaml", 1)),
        (("val/vqa_acc", "min"), {}, ("val/vqa_acc", "min", "config.yaml", 0)),
        (None, {}, ("val/vqa_acc", "max", "default", 2)),  # the task metric before val/loss
        (("val/vqa_acc", "max"), {"monitor": "val/loss"}, ("val/loss", "min", "argument", 1)),
        (None, {"monitor": "val/loss", "mode": "max"}, ("val/loss", "max", "argument", 0)),
    ],
)
def test_best_epoch_follows_the_monitor_and_mode(tmp_path, config, argument, expected):
    run = write_metrics(tmp_path / "run")
    if config is not None:
        write_config(run, *config)
    summary = write_report(run, **argument)
    assert (summary["monitor"], summary["mode"], summary["monitor_from"], summary["best_epoch"]) == expected
    assert summary["val"]["val/loss"] == EPOCHS[expected[3]][0]
    assert (run / "learning_curves.png").is_file() and (run / "summary.md").is_file()  # default out


def test_default_monitor_is_the_loss_when_no_task_metric_was_logged_and_nan_is_skipped(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("epoch,step,val/loss\n0,3,nan\n1,7,0.5\n2,11,0.7\n")
    summary = write_report(run)
    assert (summary["monitor"], summary["mode"], summary["best_epoch"]) == ("val/loss", "min", 1)
    assert summary["test"] == {} and "No test metrics" in (run / "summary.md").read_text()


def test_a_recipe_folder_reports_its_latest_version(tmp_path, caplog):
    recipe = tmp_path / "runs" / "easy_vqa"
    for version, best in ((0, 0.5), (2, 0.6), (10, 0.9)):  # 10 after 2: by number, not by name
        write_metrics(recipe / f"version_{version}", epochs=[(0.5, best, 0.6, best)])
    (recipe / "version_11").mkdir()  # a run that logged nothing yet
    (recipe / "checkpoints").mkdir()
    with caplog.at_level("INFO", logger="vlkit.report"):
        assert find_run_dir(recipe) == recipe / "version_10"
    assert "reporting version_10 (latest of 3 version folders)" in caplog.text
    summary = write_report(recipe)
    assert summary["run_dir"] == str(recipe / "version_10") and summary["val"]["val/vqa_acc"] == 0.9
    assert (recipe / "version_10" / "learning_curves.png").is_file()


def test_read_metrics_keeps_empty_cells_as_none(tmp_path):
    run = write_metrics(tmp_path / "run", epochs=EPOCHS[:1], test=None)
    rows = read_metrics(run / "metrics.csv")
    assert rows[0] == {key: None for key in COLUMNS} | {"step": 1.0, "lr-AdamW": 0.001}
    assert [row["val/vqa_acc"] for row in rows if row["val/vqa_acc"] is not None] == [0.5]


def test_errors_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty" / "version_0").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no metrics.csv"):
        write_report(tmp_path / "empty")
    run = write_metrics(tmp_path / "no_val", validate=False)
    with pytest.raises(ValueError, match="no validation rows"):
        write_report(run)
    assert not (run / "learning_curves.png").exists()
    run = write_metrics(tmp_path / "run")
    write_config(run, "val/cider_d", "max")
    with pytest.raises(ValueError, match="'val/cider_d' .*config.yaml.* not in the validation rows"):
        write_report(run)
    with pytest.raises(ValueError, match="'min' or 'max'"):
        write_report(run, monitor="val/loss", mode="best")
    (tmp_path / "blank").mkdir()
    (tmp_path / "blank" / "metrics.csv").write_text("")
    with pytest.raises(ValueError, match="empty"):
        write_report(tmp_path / "blank")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a Lightning CSVLogger"):
        write_report(tmp_path / "other")


def test_vlkit_report_command_prints_the_table(tmp_path, capsys):
    run = write_metrics(tmp_path / "run")
    main(["report", str(run), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "best epoch 2 of 4 validations by val/vqa_acc" in out and "0.7900" in out
    assert (tmp_path / "out" / "summary.json").is_file()
    with pytest.raises(SystemExit):
        main(["report"])  # RUN_DIR is required


def test_the_vlkit_command_reports_without_importing_torch(tmp_path):
    run = write_metrics(tmp_path / "run")
    code = "import sys; from vlkit.__main__ import main; main(sys.argv[1:]); print('torch' in sys.modules)"
    done = run_python(["-c", code, "report", str(run), "--out", str(tmp_path / "out")], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False" and (tmp_path / "out" / "summary.json").is_file()


# --- the progress bar of vlkit fit | validate | test ---------------------------------------------


class FakeStdout(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize(
    ("enable", "callbacks", "tty", "ci", "expected"),
    [
        (None, None, True, None, "rich"),  # a terminal: Rich bar
        (None, [ModelCheckpoint()], True, "", "rich"),
        (None, None, False, None, "off"),  # a pipe, a file, a job log: plain logs
        (None, None, True, "true", "off"),  # CI=true
        (None, None, True, "1", "off"),
        (None, None, True, "false", "rich"),
        (True, None, False, "true", "rich"),  # --trainer.enable_progress_bar true wins
        (False, None, True, None, "user"),  # --trainer.enable_progress_bar false wins
        (None, [ModelCheckpoint(), TQDMProgressBar()], True, None, "user"),  # the user's bar
        (None, TQDMProgressBar(), False, "true", "user"),
    ],
)
def test_progress_bar_choice(monkeypatch, enable, callbacks, tty, ci, expected):
    monkeypatch.setattr(sys, "stdout", FakeStdout(tty))
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert progress_bar_choice(enable, callbacks) == expected


def testprogress_bar_overrides_keep_the_users_callbacks(monkeypatch):
    monkeypatch.setattr(sys, "stdout", FakeStdout(True))
    monkeypatch.delenv("CI", raising=False)
    checkpoint = ModelCheckpoint()
    given = [checkpoint]
    overrides = progress_bar_overrides(None, given)
    assert overrides["callbacks"][0] is checkpoint and isinstance(overrides["callbacks"][1], RichProgressBar)
    assert overrides["enable_progress_bar"] is True and given == [checkpoint]  # a new list
    monkeypatch.setenv("CI", "true")
    for enable in (None, False):  # plain logs: a line per epoch instead of the bar
        overrides = progress_bar_overrides(enable, given)
        assert overrides["enable_progress_bar"] is False and overrides["callbacks"][0] is checkpoint
        assert isinstance(overrides["callbacks"][1], EpochLog) and given == [checkpoint]
    own_bar = [checkpoint, RichProgressBar()]
    assert progress_bar_overrides(None, own_bar) == {}  # the user's own progress display


# --- end to end ------------------------------------------------------------------------------------


def test_fit_in_a_terminal_shows_a_rich_bar_then_report_reads_the_run(
    tiny_vqa_on_disk, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CI", raising=False)
    terminal = FakeStdout(True)
    monkeypatch.setattr(sys, "stdout", terminal)
    at = TINY.index("--trainer.enable_progress_bar")
    overrides = TINY[:at] + TINY[at + 2 :]  # the default progress display
    limits = ("--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1")
    cli = short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, overrides, *limits)
    assert isinstance(cli.trainer.progress_bar_callback, RichProgressBar)
    assert "Epoch 0/0" in terminal.getvalue()  # the bar was drawn on the terminal
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)

    main(["report", "runs/easy_vqa_parallel", "--out", "report"])
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["run_dir"] == str(Path("runs/easy_vqa_parallel/version_0"))
    assert (summary["monitor"], summary["monitor_from"], summary["best_epoch"]) == (
        "val/vqa_acc",
        "config.yaml",
        0,
    )
    best = cli.trainer.checkpoint_callback.best_model_score
    assert math.isclose(summary["val"]["val/vqa_acc"], float(best), rel_tol=1e-6)
    assert math.isclose(summary["test"]["test/vqa_acc"], float(cli.trainer.callback_metrics["test/vqa_acc"]))
    with Image.open(tmp_path / "report" / "learning_curves.png") as figure:
        assert figure.format == "PNG"
    assert "val/vqa_acc" in capsys.readouterr().out


def test_a_recipe_folder_reports_its_latest_version_that_trained(tmp_path):
    recipe = tmp_path / "runs" / "easy_vqa"
    write_metrics(recipe / "version_0", epochs=[(0.5, 0.7, 0.6, 0.7)])
    tested_only = recipe / "version_1"  # what `vlkit test` writes: test metrics only
    tested_only.mkdir(parents=True)
    (tested_only / "metrics.csv").write_text("epoch,step,test/loss,test/vqa_acc\n0,0,0.3,0.9\n")
    assert find_run_dir(recipe) == recipe / "version_0"
    assert find_run_dir(tested_only) == tested_only  # named explicitly: used as given


def test_the_terminal_bar_updates_at_most_every_half_second_and_at_the_last_batch(monkeypatch):
    from vlkit.cli.progress import ThrottledRichProgressBar

    clock = iter([0.0, 0.1, 0.2, 0.6, 0.7, 0.8, 1.2, 1.25])
    monkeypatch.setattr("vlkit.cli.progress.time.monotonic", lambda: next(clock))
    bar = ThrottledRichProgressBar()
    due = [bar._due(batch, total=8) for batch in range(8)]
    assert due == [True, False, False, True, False, False, True, True]  # batch 7 is the last
    with pytest.raises(ValueError, match="min_interval_s must be > 0"):
        ThrottledRichProgressBar(min_interval_s=0)
    overrides = progress_bar_overrides(True, None)
    assert [type(c).__name__ for c in overrides["callbacks"]] == ["ThrottledRichProgressBar"]
