"""easy-VQA with every fusion layer of vlkit.fusion: same backbone, text encoder, seed and budget.

Usage:
    python scripts/fusion_comparison.py [--epochs 1] [--fusions mcan mfb ...] [--out comparison.json]
        [--markdown docs/fusion_comparison.md] [extra vlkit fit arguments]

Each fusion has its recipe (``RECIPES``; each extends ``recipes/vqa/easy_vqa_parallel.yaml`` and
sets only its fusion): frozen packaged EfficientNet-Lite0 regions (stride
16), bidirectional-LSTM question encoder, MLP head, seed 0. Every recipe runs in this process
for ``--epochs`` epochs and is tested on its best checkpoint; logs go to
``runs/fusion_comparison/<fusion>/``. Printed: test VQA accuracy, training seconds per epoch
(validation excluded), parameters of the fusion layer and trainable parameters of the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_runs, when imported from elsewhere

from recipe_runs import run_many, run_recipe

from vlkit.fusion import list_fusions

ROOT = Path(__file__).resolve().parents[1]
#: fusion name -> its easy-VQA recipe
_SHORT = {"parallel_coattention": "parallel", "alternating_coattention": "alternating"}
RECIPES = {name: f"recipes/vqa/easy_vqa_{_SHORT.get(name, name)}.yaml" for name in list_fusions()}
COLUMNS = {
    "name": "fusion",
    "test_vqa_acc": "test VQA accuracy",
    "train_s_per_epoch": "train s / epoch",
    "fusion_params": "fusion params",
    "trainable_params": "trainable params",
}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--fusions", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--markdown", default=None, help="Markdown file for the table")
    parser.add_argument("--log-root", default="runs/fusion_comparison")
    args, extra = parser.parse_known_args(argv)

    def run_one(name: str) -> dict:
        return run_recipe(str(ROOT / RECIPES[name]), name, args.log_root, args.epochs, extra)

    return run_many(args.fusions, run_one, COLUMNS, args.out, args.markdown)


if __name__ == "__main__":
    main()
