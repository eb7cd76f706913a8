"""The README's main job on real data (slow: ~4 min per run on 2 CPU cores).

Run with ``python -m pytest -m slow``; deselected by default.
"""

from pathlib import Path

import pytest

from vlkit.cli import cli_main

RECIPES = Path(__file__).parents[1] / "recipes" / "vqa"


def fit_and_test(recipe: str, seed: int) -> float:
    """``vlkit fit --config recipes/vqa/<recipe> --seed_everything <seed>``: the test VQA accuracy."""
    args = ["fit", "--config", str(RECIPES / recipe), "--seed_everything", str(seed)]
    cli = cli_main([*args, "--trainer.enable_progress_bar", "false"])
    return cli.trainer.callback_metrics["test/vqa_acc"].item()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_the_main_recipe_reaches_0985_test_accuracy_on_each_seed(seed, tmp_path, monkeypatch):
    """README: ``vlkit fit --config recipes/vqa/easy_vqa_parallel_stride8.yaml`` (and seeds 1-4; 4 is
    the seed on which the stride-16 base tests at 0.966)."""
    monkeypatch.chdir(tmp_path)
    assert fit_and_test("easy_vqa_parallel_stride8.yaml", seed) >= 0.985


@pytest.mark.slow
def test_the_base_recipe_reaches_0985_test_accuracy(tmp_path, monkeypatch):
    """The stride-16 recipe every easy-VQA recipe extends (seed-sensitive: seeds 3, 4 and 6 fall short)."""
    monkeypatch.chdir(tmp_path)
    assert fit_and_test("easy_vqa_parallel.yaml", 0) >= 0.985
