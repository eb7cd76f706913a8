"""scripts/fusion_table.py: the full-schedule table from easy_vqa_results.py's JSON."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import fusion_table


def test_epochs_to_a_validation_accuracy():
    assert fusion_table.epochs_to([0.90, 0.949, 0.95, 0.97]) == 3
    assert fusion_table.epochs_to([0.90, 0.94]) is None


def test_the_table_gives_each_recipe_its_seeds_mean_sd_and_epochs(tmp_path):
    def row(recipe, seed, accuracy, curve):
        return {
            "recipe": recipe,
            "seed": seed,
            "run_dir": str(tmp_path / f"none{seed}"),
            "test_vqa_acc": accuracy,
            "val_vqa_acc": curve,
        }

    results = [
        row("recipes/vqa/a.yaml", 1, 0.98, [0.9, 0.96]),
        row("recipes/vqa/a.yaml", 0, 0.96, [0.96, 0.97]),
        row("recipes/vqa/b.yaml", 0, 0.90, [0.8, 0.9]),
        row("recipes/vqa/b.yaml", 1, 0.92, [0.9, 0.95]),
    ]
    lines = fusion_table.table(results, {"recipes/vqa/a.yaml": 31.4}, limit=10).splitlines()
    assert lines[2] == "| `a.yaml` | 0, 1 | 0.9600, 0.9800 | 0.9700 ± 0.0141 | 1.5 | 31 | n/a | n/a |"
    assert lines[3] == "| `b.yaml` | 0, 1 | 0.9000, 0.9200 | 0.9100 ± 0.0141 | 1 of 2 never | n/a | n/a | n/a |"
