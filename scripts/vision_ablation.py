"""Ablation of the image encoder: attention blocks (none / CBAM / STN / both) on a frozen or a
fine-tuned backbone, and weights from scratch, same recipe, over seeds.

Usage:
    python scripts/vision_ablation.py [--recipe recipes/vqa/easy_vqa_cluttered.yaml] [--epochs 8]
        [--variants none cbam ...] [--seeds 0 1 2] [--out ablation.json] [--markdown table.md]
        [extra vlkit fit arguments, e.g. --trainer.limit_train_batches 10]

Every variant and seed runs ``vlkit fit --config RECIPE`` (default the base recipe; the
cluttered benchmark is ``recipes/vqa/easy_vqa_cluttered.yaml``) in this process with
``--trainer.max_epochs EPOCHS``, ``--seed_everything SEED`` and its own image-encoder arguments,
logging to ``<--runs_dir>/<variant>_seed<SEED>/`` (default ``runs/ablation``); the best checkpoint is then tested. Printed
per run: test VQA accuracy, training seconds per epoch (validation excluded) and the number of
trainable parameters; with several seeds also each variant's mean ± sample sd and, where the
base (``none``) ran on the same seeds, each variant's difference from it seed by seed (the
blocks initialise from their own random stream, so a seed's runs differ only by what the blocks
learn). ``--summarise A.json B.json ...`` prints those summaries for earlier runs' ``--out`` files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_runs, when imported from elsewhere

from recipe_runs import run_many, run_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/vqa/easy_vqa_parallel.yaml"
# variant -> (image encoder arguments changed, task arguments changed); the rest is the recipe's
FINETUNE = ({"freeze": False}, {"optimization.backbone_lr_ratio": 0.1})
TOP_FINETUNE = ({"freeze": 3}, {"optimization.backbone_lr_ratio": 0.1})
# the localisation network at a tenth of the rate, as the STN recipes train it
SLOW_LOCALIZATION = {"optimization.localization_lr_ratio": 0.1}
VARIANTS = {
    "none": ({}, {}),
    "cbam": ({"cbam": "stages"}, {}),
    "stn": ({"stn": "input"}, {}),
    "cbam+stn": ({"cbam": "stages", "stn": "input"}, {}),
    "finetuned": FINETUNE,
    "finetuned+cbam": ({**FINETUNE[0], "cbam": "stages"}, FINETUNE[1]),
    "finetuned+stn": ({**FINETUNE[0], "stn": "input"}, FINETUNE[1]),
    # the same with the localisation network at the backbone's rate (0.1 x lr), not the head's
    "finetuned+stn-loc0.1": (
        {**FINETUNE[0], "stn": "input"},
        {**FINETUNE[1], **SLOW_LOCALIZATION},
    ),
    "finetuned+cbam+stn": ({**FINETUNE[0], "cbam": "stages", "stn": "input"}, FINETUNE[1]),
    "finetuned+cbam+stn-loc0.1": (
        {**FINETUNE[0], "cbam": "stages", "stn": "input"},
        {**FINETUNE[1], **SLOW_LOCALIZATION},
    ),
    "scratch": ({"packaged_weights": False, "freeze": False}, {}),
    # partial fine-tuning: the stem and the first three stages frozen, their output cached (stride 8
    # on EfficientNet-Lite0), the stages after them trained at a tenth of the rate, as "finetuned"
    "top-finetuned": TOP_FINETUNE,
    "top-finetuned+cbam-output": ({**TOP_FINETUNE[0], "cbam": "output"}, TOP_FINETUNE[1]),
    "top-finetuned+cbam-regions": ({**TOP_FINETUNE[0], "cbam": "regions"}, TOP_FINETUNE[1]),
    "top-finetuned+stn-output": (
        {**TOP_FINETUNE[0], "stn": "output"},
        {**TOP_FINETUNE[1], **SLOW_LOCALIZATION},
    ),
    "top-finetuned+cbam+stn-output": (
        {**TOP_FINETUNE[0], "cbam": "output", "stn": "output"},
        {**TOP_FINETUNE[1], **SLOW_LOCALIZATION},
    ),
    # blocks on the map the encoder reads, after the frozen backbone: cached features, no backward
    # through the backbone; the localisation net at a tenth of the rate, as in the STN recipe
    "cbam-output": ({"cbam": "output"}, {}),
    # the same with its gate clamped to [0, 1]: the block can only attenuate, never act as a gain
    "cbam-bounded-output": ({"cbam": "output", "cbam_gate": "bounded"}, {}),
    # the paper's plain block (no gate): F * M_c * M_s; after a frozen backbone the trainable
    # projection that follows absorbs its initial scale (about a quarter)
    "cbam-plain-output": ({"cbam": "output", "cbam_gate": None}, {}),
    # the spatial logits batch-normalised before the sigmoid, as in the authors' code: the map
    # keeps its contrast whatever the scale of the backbone's features
    "cbam-bn-output": ({"cbam": "output", "cbam_spatial_norm": True}, {}),
    "cbam-plain-bn-output": ({"cbam": "output", "cbam_gate": None, "cbam_spatial_norm": True}, {}),
    # one block on the encoder's region features, after its projection and per-region LayerNorm,
    # which undoes an "output" block's spatial map (a cell's features scaled by one number)
    "cbam-regions": ({"cbam": "regions"}, {}),
    "cbam-bn-regions": ({"cbam": "regions", "cbam_spatial_norm": True}, {}),
    "cbam-bounded-regions": ({"cbam": "regions", "cbam_gate": "bounded"}, {}),
    "stn-output": ({"stn": "output"}, SLOW_LOCALIZATION),
    "cbam+stn-output": ({"cbam": "output", "stn": "output"}, SLOW_LOCALIZATION),
    # an STN reading the full image and giving the backbone a 64-pixel view (Jaderberg et al.'s
    # downsampling transformer); compare with the base at image_size 64, which costs the same
    "stn-zoom64": ({"stn": "input", "stn_output_size": 64}, SLOW_LOCALIZATION),
    # the same with a crop-and-zoom (scale + translation) located by the frozen pretrained backbone
    # on the 64-pixel view, as the paper's CUB-200 transformers locate with a pretrained network
    "stn-zoom64-locate": (
        {"stn": "input", "stn_output_size": 64, "stn_transform": "attention", "stn_localization": "backbone"},
        SLOW_LOCALIZATION,
    ),
    # a glimpse: a window of half the canvas's side (the 64-pixel view then holds the canvas at
    # full resolution) that starts on the centre and only moves, kept inside the canvas, located
    # as above; it starts holding part of most shapes, so the gradient through the sampler can
    # move it towards the rest
    "stn-glimpse64": (
        {
            "stn": "input",
            "stn_output_size": 64,
            "stn_transform": "translation",
            "stn_init_scale": 0.5,
            "stn_localization": "backbone",
        },
        {"optimization.localization_lr_ratio": 0.3},
    ),
    # the same glimpse placed at the expected position of a softmax over the frozen backbone's
    # cells (a cell's score depends on what is there, not where: no one place for every image)
    "stn-glimpse64-saliency": (
        {
            "stn": "input",
            "stn_output_size": 64,
            "stn_transform": "translation",
            "stn_init_scale": 0.5,
            "stn_localization": "saliency",
        },
        {"optimization.localization_lr_ratio": 1.0, "optimization.localization_start_fraction": 0.25},
    ),
    # the same, its softmax over the cells of the full 128-pixel canvas (8 x 8 at stride 16, one
    # cell per 16 pixels) instead of the 64-pixel view's 4 x 4: the paper's localisation networks
    # read the full-resolution input
    "stn-glimpse64-saliency128": (
        {
            "stn": "input",
            "stn_output_size": 64,
            "stn_transform": "translation",
            "stn_init_scale": 0.5,
            "stn_localization": "saliency",
            "stn_localization_size": 128,
        },
        {"optimization.localization_lr_ratio": 1.0, "optimization.localization_start_fraction": 0.25},
    ),
}


COLUMNS = {
    "name": "variant",
    "test_vqa_acc": "test VQA accuracy",
    "train_s_per_epoch": "train s / epoch",
    "trainable_params": "trainable params",
}


def run(
    variant: str,
    epochs: int,
    extra: list[str],
    recipe: str = RECIPE,
    seed: int | None = None,
    runs_dir: str = "runs/ablation",
) -> dict:
    encoder_args, task_args = VARIANTS[variant]
    overrides = []
    for key, value in encoder_args.items():
        overrides += [
            f"--model.init_args.image_encoder.{key}",
            "null" if value is None else str(value).lower(),
        ]
    for key, value in task_args.items():
        overrides += [f"--model.init_args.{key}", str(value)]
    name = variant if seed is None else f"{variant}_seed{seed}"
    seeded = [] if seed is None else ["--seed_everything", str(seed)]
    result = run_recipe(str(ROOT / recipe), name, runs_dir, epochs, [*overrides, *seeded, *extra])
    return {**result, "variant": variant, "seed": seed, "recipe": recipe}


def _mean_sd(values: list[float], sign: str) -> str:
    """``mean ± sample sd`` to 4 places (the mean with ``sign``, e.g. "+"), or "n/a" for one value."""
    if len(values) < 2:
        return "n/a"
    return f"{statistics.mean(values):{sign}.4f} ± {statistics.stdev(values):.4f}"


def summaries(results: list[dict], base: str = "none") -> str:
    """:func:`seed_summary`, then :func:`paired_summary` against ``base`` where there is one (Markdown)."""
    return "\n\n".join(filter(None, [seed_summary(results), paired_summary(results, base)]))


def seed_summary(results: list[dict]) -> str:
    """Each variant's test VQA accuracy over its seeds, mean ± sample sd (Markdown)."""
    lines = ["| variant | seeds | test VQA accuracy per seed | mean ± sd |", "|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]
        accuracy = [r["test_vqa_acc"] for r in rows]
        spread = _mean_sd(accuracy, "")
        seeds = ", ".join(str(r["seed"]) for r in rows)
        lines.append(f"| {variant} | {seeds} | {', '.join(f'{a:.4f}' for a in accuracy)} | {spread} |")
    return "\n".join(lines)


def paired_summary(results: list[dict], base: str = "none") -> str:
    """Each variant's test VQA accuracy minus ``base``'s on the same seed, mean ± sample sd over
    the seeds both have (Markdown; empty without ``base``). The inserted blocks initialise from
    a random stream of their own, so a seed's two runs start every shared weight alike and the
    difference is what the blocks learned."""
    by_seed = {r["seed"]: r["test_vqa_acc"] for r in results if r["variant"] == base}
    lines = [
        f"| variant | seeds | minus {base}, per seed | mean ± sd |",
        "|---|---|---|---|",
    ]
    for variant in dict.fromkeys(r["variant"] for r in results if r["variant"] != base):
        rows = [r for r in results if r["variant"] == variant and r["seed"] in by_seed]
        if not rows:
            continue
        delta = [r["test_vqa_acc"] - by_seed[r["seed"]] for r in rows]
        spread = _mean_sd(delta, "+")
        seeds = ", ".join(str(r["seed"]) for r in rows)
        lines.append(f"| {variant} | {seeds} | {', '.join(f'{d:+.4f}' for d in delta)} | {spread} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=RECIPE, help="the recipe every variant changes")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--seeds", nargs="+", type=int, default=None, help="run each variant with these seeds"
    )
    parser.add_argument(
        "--runs_dir", default="runs/ablation", help="where each run logs (<variant>_seed<SEED>/)"
    )
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--markdown", default=None, help="Markdown file for the table")
    parser.add_argument(
        "--summarise",
        nargs="+",
        default=None,
        metavar="JSON",
        help="run nothing: print the summaries of earlier runs' --out files",
    )
    parser.add_argument(
        "--base",
        default=None,
        choices=list(VARIANTS),
        help="with --summarise: the variant the others are paired with, seed by seed (default: none, "
        "where there is one; e.g. top-finetuned)",
    )
    args, extra = parser.parse_known_args(argv)
    if args.summarise:
        missing = [path for path in args.summarise if not Path(path).is_file()]
        if missing:
            parser.error(f"--summarise: no such file {missing}; give the JSON files that --out wrote")
        results = [r for path in args.summarise for r in json.loads(Path(path).read_text())]
        recipes = sorted({r["recipe"] for r in results if "recipe" in r})
        if len(recipes) > 1:
            parser.error(
                f"--summarise: the files hold runs of several recipes {recipes}; give one recipe's files"
            )
        if args.base is not None and args.base not in {r["variant"] for r in results}:
            parser.error(
                f"--summarise: no run of the base variant {args.base!r} in the files; add its --out files"
            )
        print(summaries(results, args.base or "none"))
        return results
    seeds = args.seeds or [None]
    runs = [f"{variant}@{seed}" for variant in args.variants for seed in seeds]

    def run_one(key: str) -> dict:
        variant, seed = key.split("@")
        return run(
            variant, args.epochs, extra, args.recipe, None if seed == "None" else int(seed), args.runs_dir
        )

    results = run_many(runs, run_one, COLUMNS, args.out, args.markdown)
    if len(seeds) > 1:
        summary = summaries(results)
        print(summary)
        if args.markdown:
            Path(args.markdown).write_text(Path(args.markdown).read_text() + "\n" + summary + "\n")
    return results


if __name__ == "__main__":
    main()
