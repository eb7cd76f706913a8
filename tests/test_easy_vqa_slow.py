"""The README's main job on real data (slow: ~10 min per recipe on 2 CPU cores).

Run with ``python -m pytest -m slow``; deselected by default.
"""

from pathlib import Path

import pytest

from vlkit.cli import cli_main

RECIPES = Path(__file__).parents[1] / "recipes" / "vqa"


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["easy_vqa_parallel.yaml", "easy_vqa_alternating.yaml"])
def test_recipe_reaches_097_test_accuracy_on_easy_vqa(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", str(RECIPES / recipe), "--trainer.enable_progress_bar", "false"])
    assert cli.trainer.callback_metrics["test/vqa_acc"].item() >= 0.97
