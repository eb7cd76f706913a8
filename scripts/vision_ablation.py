"""easy-VQA ablation of the image encoder: attention blocks (none / CBAM / STN / both) and weights
(from scratch / packaged EfficientNet-Lite0 frozen / fine-tuned), same recipe and seed.

Usage:
    python scripts/vision_ablation.py [--epochs 2] [--variants none cbam ...] [--out ablation.json]
        [extra vlkit fit arguments, e.g. --trainer.limit_train_batches 10]

Every variant runs ``vlkit fit --config recipes/vqa/easy_vqa_parallel.yaml`` in this process
with ``--trainer.max_epochs EPOCHS`` and its own ``model_args``, logging to
``runs/ablation/<variant>/``; the best checkpoint is then tested. Printed per variant: test VQA
accuracy, training seconds per epoch (validation excluded) and the
number of trainable parameters.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml
from pytorch_lightning.callbacks import Callback

RECIPE = "recipes/vqa/easy_vqa_parallel.yaml"
# the recipe's own model_args; each variant overrides some of them
BASE = yaml.safe_load((Path(__file__).resolve().parents[1] / RECIPE).read_text())["model"]["init_args"][
    "model_args"
]
# variant -> (model_args overrides, task overrides)
VARIANTS = {
    "none": ({}, {}),
    "cbam": ({"cbam": "stages"}, {}),
    "stn": ({"stn": "input"}, {}),
    "cbam+stn": ({"cbam": "stages", "stn": "input"}, {}),
    "scratch": ({"packaged_weights": False, "freeze_backbone": False}, {}),
    "finetuned": ({"freeze_backbone": False}, {"backbone_lr_ratio": 0.1}),
}


class EpochTimer(Callback):
    """Seconds of each training epoch (validation excluded)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0
        self._val = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._val = time.perf_counter(), 0.0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._val += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start - self._val)


def run(variant: str, epochs: int, extra: list[str]) -> dict:
    from vlkit.cli import cli_main

    model_args, task_args = VARIANTS[variant]
    args = [
        "fit",
        "--config",
        RECIPE,
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.logger",
        yaml.safe_dump(
            {
                "class_path": "pytorch_lightning.loggers.CSVLogger",
                "init_args": {"save_dir": "runs/ablation", "name": variant},
            },
            default_flow_style=True,
        ).strip(),
        f"--trainer.callbacks+={__name__}.EpochTimer",
        "--model.init_args.model_args",
        yaml.safe_dump(BASE | model_args, default_flow_style=True).strip(),
    ]
    for key, value in task_args.items():
        args += [f"--model.init_args.{key}", str(value)]
    cli = cli_main([*args, *extra])
    timer = next(c for c in cli.trainer.callbacks if type(c).__name__ == "EpochTimer")
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    trainable = sum(p.numel() for p in cli.model.parameters() if p.requires_grad)
    return {
        "variant": variant,
        "test_vqa_acc": metrics.get("test/vqa_acc"),
        "val_vqa_acc": metrics.get("val/vqa_acc"),
        "epochs": cli.trainer.current_epoch,
        "train_s_per_epoch": round(sum(timer.seconds) / max(len(timer.seconds), 1), 1),
        "trainable_params": trainable,
        "log_dir": cli.trainer.logger.log_dir,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=None)
    args, extra = parser.parse_known_args()
    results = []
    for variant in args.variants:
        results.append(run(variant, args.epochs, extra))
        if args.out:  # keep partial results if a later variant fails
            Path(args.out).write_text(json.dumps(results, indent=2))
    print("| variant | test VQA accuracy | train s / epoch | trainable params |")
    print("|---|---|---|---|")
    for r in results:
        acc = "n/a" if r["test_vqa_acc"] is None else f"{r['test_vqa_acc']:.4f}"
        print(f"| {r['variant']} | {acc} | {r['train_s_per_epoch']} | {r['trainable_params']:,} |")


if __name__ == "__main__":
    main()
