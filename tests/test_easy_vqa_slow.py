"""The README's main job on real data (slow: ~4 min per run on 2 CPU cores).

Run with ``python -m pytest -m slow``; deselected by default.
"""

from pathlib import Path

import pytest

from vlkit.cli import cli_main

RECIPES = Path(__file__).parents[1] / "recipes" / "vqa"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_main_recipe_reaches_0985_test_accuracy_on_each_seed(seed, tmp_path, monkeypatch):
    """README: ``vlkit fit --config recipes/vqa/easy_vqa_parallel.yaml`` (and seeds 1, 2)."""
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(RECIPES / "easy_vqa_parallel.yaml"), "--seed_everything", str(seed)]
    cli = cli_main([*args, "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.callback_metrics["test/vqa_acc"].item() >= 0.985


@pytest.mark.slow
def test_the_alternating_recipe_reaches_097_test_accuracy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = str(RECIPES / "easy_vqa_alternating.yaml")
    cli = cli_main(["fit", "--config", recipe, "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.callback_metrics["test/vqa_acc"].item() >= 0.97
