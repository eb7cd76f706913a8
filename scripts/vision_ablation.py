"""easy-VQA ablation of the image encoder: attention blocks (none / CBAM / STN / both) and weights
(from scratch / packaged EfficientNet-Lite0 frozen / fine-tuned), same recipe and seed.

Usage:
    python scripts/vision_ablation.py [--epochs 2] [--variants none cbam ...] [--out ablation.json]
        [extra vlkit fit arguments, e.g. --trainer.limit_train_batches 10]

Every variant runs ``vlkit fit --config recipes/vqa/easy_vqa_parallel.yaml`` in this process
with ``--trainer.max_epochs EPOCHS`` and its own image-encoder arguments, logging to
``runs/ablation/<variant>/``; the best checkpoint is then tested. Printed per variant: test VQA
accuracy, training seconds per epoch (validation excluded) and the
number of trainable parameters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_runs, when imported from elsewhere

from recipe_runs import run_many, run_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/vqa/easy_vqa_parallel.yaml"
# variant -> (image encoder arguments changed, task arguments changed); the rest is the recipe's
VARIANTS = {
    "none": ({}, {}),
    "cbam": ({"cbam": "stages"}, {}),
    "stn": ({"stn": "input"}, {}),
    "cbam+stn": ({"cbam": "stages", "stn": "input"}, {}),
    "scratch": ({"packaged_weights": False, "freeze": False}, {}),
    "finetuned": ({"freeze": False}, {"optimization.backbone_lr_ratio": 0.1}),
}


COLUMNS = {
    "name": "variant",
    "test_vqa_acc": "test VQA accuracy",
    "train_s_per_epoch": "train s / epoch",
    "trainable_params": "trainable params",
}


def run(variant: str, epochs: int, extra: list[str]) -> dict:
    encoder_args, task_args = VARIANTS[variant]
    overrides = []
    for key, value in encoder_args.items():
        overrides += [f"--model.init_args.image_encoder.{key}", str(value).lower()]
    for key, value in task_args.items():
        overrides += [f"--model.init_args.{key}", str(value)]
    result = run_recipe(str(ROOT / RECIPE), variant, "runs/ablation", epochs, [*overrides, *extra])
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--markdown", default=None, help="Markdown file for the table")
    args, extra = parser.parse_known_args(argv)
    return run_many(args.variants, lambda v: run(v, args.epochs, extra), COLUMNS, args.out, args.markdown)


if __name__ == "__main__":
    main()
