"""Tests for scripts/easy_vqa_results.py: reading Lightning CSV logs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "easy_vqa_results.py"
spec = importlib.util.spec_from_file_location("easy_vqa_results", SCRIPT)
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)

CSV = """epoch,step,train/loss_step,val/loss,val/vqa_acc,train/loss_epoch,train/vqa_acc,test/vqa_acc
0,49,0.9,,,,,
0,99,,0.5,0.8,,,
0,99,,,,0.7,0.6,
1,199,,0.3,0.9,,,
1,199,,,,0.4,0.85,
1,199,,,,,,0.91
"""


def test_epoch_curve_and_last_values(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(CSV)
    curve = results.epoch_curve(path)
    assert [row["epoch"] for row in curve] == [0, 1]
    assert curve[0] == {
        "epoch": 0,
        "val/loss": 0.5,
        "val/vqa_acc": 0.8,
        "train/loss_epoch": 0.7,
        "train/vqa_acc": 0.6,
    }
    assert curve[1]["val/vqa_acc"] == 0.9 and curve[1]["train/loss_epoch"] == 0.4
    last = results.last_values(path)
    assert last["test/vqa_acc"] == 0.91 and last["val/loss"] == 0.3 and last["train/loss_step"] == 0.9


def test_print_curves(tmp_path, capsys):
    (tmp_path / "metrics.csv").write_text(CSV)
    results.print_curves([str(tmp_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2] == "| 0 | 0.7000 | 0.6000 | 0.5000 | 0.8000 |"
    assert lines[-1] == "| 1 | 0.4000 | 0.8500 | 0.3000 | 0.9000 |"
