"""Ablation of the image encoder: attention blocks (none / CBAM / STN / both) on a frozen or a
fine-tuned backbone, and weights from scratch, same recipe, over seeds.

Usage:
    python scripts/vision_ablation.py [--recipe recipes/vqa/easy_vqa_cluttered.yaml] [--epochs 8]
        [--variants none cbam ...] [--seeds 0 1 2] [--out ablation.json] [--markdown table.md]
        [extra vlkit fit arguments, e.g. --trainer.limit_train_batches 10]

Every variant and seed runs ``vlkit fit --config RECIPE`` (default the main recipe; the
cluttered benchmark is ``recipes/vqa/easy_vqa_cluttered.yaml``) in this process with
``--trainer.max_epochs EPOCHS``, ``--seed_everything SEED`` and its own image-encoder arguments,
logging to ``runs/ablation/<variant>_seed<SEED>/``; the best checkpoint is then tested. Printed
per run: test VQA accuracy, training seconds per epoch (validation excluded) and the number of
trainable parameters; with several seeds also each variant's mean ± sample sd.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_runs, when imported from elsewhere

from recipe_runs import run_many, run_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/vqa/easy_vqa_parallel.yaml"
# variant -> (image encoder arguments changed, task arguments changed); the rest is the recipe's
FINETUNE = ({"freeze": False}, {"optimization.backbone_lr_ratio": 0.1})
VARIANTS = {
    "none": ({}, {}),
    "cbam": ({"cbam": "stages"}, {}),
    "stn": ({"stn": "input"}, {}),
    "cbam+stn": ({"cbam": "stages", "stn": "input"}, {}),
    "finetuned": FINETUNE,
    "finetuned+cbam": ({**FINETUNE[0], "cbam": "stages"}, FINETUNE[1]),
    "finetuned+stn": ({**FINETUNE[0], "stn": "input"}, FINETUNE[1]),
    "finetuned+cbam+stn": ({**FINETUNE[0], "cbam": "stages", "stn": "input"}, FINETUNE[1]),
    "scratch": ({"packaged_weights": False, "freeze": False}, {}),
}


COLUMNS = {
    "name": "variant",
    "test_vqa_acc": "test VQA accuracy",
    "train_s_per_epoch": "train s / epoch",
    "trainable_params": "trainable params",
}


def run(variant: str, epochs: int, extra: list[str], recipe: str = RECIPE, seed: int | None = None) -> dict:
    encoder_args, task_args = VARIANTS[variant]
    overrides = []
    for key, value in encoder_args.items():
        overrides += [f"--model.init_args.image_encoder.{key}", str(value).lower()]
    for key, value in task_args.items():
        overrides += [f"--model.init_args.{key}", str(value)]
    name = variant if seed is None else f"{variant}_seed{seed}"
    seeded = [] if seed is None else ["--seed_everything", str(seed)]
    result = run_recipe(str(ROOT / recipe), name, "runs/ablation", epochs, [*overrides, *seeded, *extra])
    return {**result, "variant": variant, "seed": seed}


def seed_summary(results: list[dict]) -> str:
    """Each variant's test VQA accuracy over its seeds, mean ± sample sd (Markdown)."""
    lines = ["| variant | seeds | test VQA accuracy per seed | mean ± sd |", "|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]
        accuracy = [r["test_vqa_acc"] for r in rows]
        spread = (
            f"{statistics.mean(accuracy):.4f} ± {statistics.stdev(accuracy):.4f}" if len(rows) > 1 else "n/a"
        )
        seeds = ", ".join(str(r["seed"]) for r in rows)
        lines.append(f"| {variant} | {seeds} | {', '.join(f'{a:.4f}' for a in accuracy)} | {spread} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE, help="the recipe every variant changes")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=None, help="run each variant with these seeds"
    )
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--markdown", default=None, help="Markdown file for the table")
    args, extra = parser.parse_known_args(argv)
    seeds = args.seeds or [None]
    runs = [f"{variant}@{seed}" for variant in args.variants for seed in seeds]

    def run_one(key: str) -> dict:
        variant, seed = key.split("@")
        return run(variant, args.epochs, extra, args.recipe, None if seed == "None" else int(seed))

    results = run_many(runs, run_one, COLUMNS, args.out, args.markdown)
    if len(seeds) > 1:
        summary = seed_summary(results)
        print(summary)
        if args.markdown:
            Path(args.markdown).write_text(Path(args.markdown).read_text() + "\n" + summary + "\n")
    return results


if __name__ == "__main__":
    main()
