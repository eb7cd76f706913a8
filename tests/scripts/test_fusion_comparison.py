"""Tests for scripts/fusion_comparison.py and the shared scripts/recipe_runs.py."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import yaml

from vlkit.fusion import FUSIONS

SCRIPTS = Path(__file__).parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
spec = importlib.util.spec_from_file_location("fusion_comparison", SCRIPTS / "fusion_comparison.py")
comparison = importlib.util.module_from_spec(spec)
spec.loader.exec_module(comparison)
import recipe_runs


def test_every_fusion_has_a_recipe_that_names_it_and_differs_only_there():
    assert set(comparison.RECIPES) == set(FUSIONS)
    root = Path(__file__).parents[2]
    base_path = root / comparison.RECIPES["parallel_coattention"]
    for name, recipe in comparison.RECIPES.items():
        config = yaml.safe_load((root / recipe).read_text())
        if root / recipe == base_path:
            continue
        # the variant extends the base and sets its fusion (and the optimisation and schedule it
        # needs), nothing else
        assert (root / recipe).parent / config["base"] == base_path, recipe
        assert set(config) <= {"base", "model", "trainer"} and set(config["model"]) == {"init_args"}, recipe
        assert set(config.get("trainer", {})) <= {"max_epochs"}, recipe
        assert "fusion" in config["model"]["init_args"], recipe
        assert set(config["model"]["init_args"]) <= {"fusion", "optimization"}, recipe
        assert config["model"]["init_args"]["fusion"]["name"] == name, recipe


def test_markdown_table_formats_cells():
    rows = [{"name": "mcan", "acc": 0.91234, "s": 88.4, "params": 1234567}, {"name": "x", "acc": None}]
    table = recipe_runs.markdown_table(rows, {"name": "fusion", "acc": "acc", "s": "s", "params": "params"})
    assert table.splitlines() == [
        "| fusion | acc | s | params |",
        "|---|---|---|---|",
        "| mcan | 0.9123 | 88.4 | 1,234,567 |",
        "| x | n/a | n/a | n/a |",
    ]


def test_comparison_runs_recipes_and_writes_json_and_markdown(
    tiny_vqa_on_disk, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    out, markdown = tmp_path / "c.json", tmp_path / "c.md"
    results = comparison.main(
        [
            "--fusions", "gated", "mfb",
            "--out", str(out), "--markdown", str(markdown), "--log-root", str(tmp_path / "runs"),
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
            "--trainer.limit_test_batches", "1", "--trainer.log_every_n_steps", "1",
            "--data.init_args.dataset", str(tiny_vqa_on_disk), "--data.init_args.image_column", "img",
            "--data.init_args.question_column", "q", "--data.init_args.answer_column", "answers",
            "--data.init_args.image_size", "32", "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "8",
        ]
    )  # fmt: skip
    assert [r["name"] for r in results] == ["gated", "mfb"]
    assert json.loads(out.read_text()) == results
    for r in results:
        assert 0.0 <= r["test_vqa_acc"] <= 1.0 and r["epochs"] == 1 and r["train_s_per_epoch"] > 0
        assert 0 < r["fusion_params"] < r["trainable_params"]
        assert (Path(r["log_dir"]) / "metrics.csv").is_file()
    assert results[0]["fusion_params"] != results[1]["fusion_params"]  # each recipe built its own fusion
    table = markdown.read_text()
    assert table.splitlines()[2].startswith("| gated | ") and table.strip() in capsys.readouterr().out
