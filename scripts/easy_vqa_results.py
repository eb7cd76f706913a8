"""Train the easy-VQA recipes and print test accuracy and wall time (the README's Results table).

Usage:
    python scripts/easy_vqa_results.py [--recipes recipes/vqa/easy_vqa_parallel.yaml ...] [--seeds 0 1 2]
        [--out results.json]
    python scripts/easy_vqa_results.py --curves runs/easy_vqa_hard_attention/version_0 ...

``--curves`` prints, for finished run folders, the per-epoch training loss and validation
loss / VQA accuracy (no training).

Each recipe is run as ``vlkit fit --config RECIPE --seed_everything SEED`` (which trains, then
tests the best checkpoint) in a subprocess, one after the other (run nothing else meanwhile: the
wall time covers the whole command); with several seeds the table adds each recipe's mean ±
sample standard deviation. Metrics are read from the run folder's ``metrics.csv``; each seed's
run is named ``<recipe>_seed<SEED>``.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["recipes/vqa/easy_vqa_parallel.yaml", "recipes/vqa/easy_vqa_alternating.yaml"]


def last_values(metrics_csv: Path) -> dict[str, float]:
    """The last non-empty value of every column of a Lightning CSV log."""
    values: dict[str, float] = {}
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            values.update({k: float(v) for k, v in row.items() if v not in ("", None)})
    return values


def epoch_curve(metrics_csv: Path) -> list[dict[str, float]]:
    """Per-epoch ``train/loss_epoch``, ``val/loss`` and ``val/vqa_acc`` of a Lightning CSV log."""
    epochs: dict[int, dict[str, float]] = {}
    keys = ("train/loss_epoch", "train/vqa_acc", "val/loss", "val/vqa_acc")
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
            if row.get("epoch") not in ("", None):
                values = {k: float(row[k]) for k in keys if row.get(k) not in ("", None)}
                epochs.setdefault(int(float(row["epoch"])), {}).update(values)
    return [{"epoch": e, **v} for e, v in sorted(epochs.items()) if v]


def print_curves(run_dirs: list[str]) -> None:
    for run_dir in run_dirs:
        print(
            f"\n{run_dir}\n| epoch | train loss | train VQA acc | val loss | val VQA acc |\n|---|---|---|---|---|"
        )
        for row in epoch_curve(Path(run_dir) / "metrics.csv"):
            cells = [row.get(k) for k in ("train/loss_epoch", "train/vqa_acc", "val/loss", "val/vqa_acc")]
            print(f"| {row['epoch']} | " + " | ".join("" if c is None else f"{c:.4f}" for c in cells) + " |")


def run(recipe: str, seed: int | None, extra: list[str]) -> dict:
    name = Path(recipe).stem if seed is None else f"{Path(recipe).stem}_seed{seed}"
    before = set((ROOT / "runs" / name).glob("version_*"))
    seeded = [] if seed is None else ["--seed_everything", str(seed), "--run_name", name]
    start = time.perf_counter()
    subprocess.run(
        ["vlkit", "fit", "--config", recipe, "--trainer.enable_progress_bar", "false", *seeded, *extra],
        cwd=ROOT,
        check=True,
    )
    seconds = time.perf_counter() - start
    (run_dir,) = set((ROOT / "runs" / name).glob("version_*")) - before
    metrics = last_values(run_dir / "metrics.csv")
    curve = epoch_curve(run_dir / "metrics.csv")
    return {
        "recipe": recipe,
        "seed": seed,
        "run_dir": str(run_dir.relative_to(ROOT)),
        "wall_s": round(seconds, 1),
        "test_vqa_acc": metrics["test/vqa_acc"],
        "test_exact_match": metrics["test/exact_match"],
        "val_vqa_acc": [round(row["val/vqa_acc"], 4) for row in curve if "val/vqa_acc" in row],
        "epochs": len(curve),  # training epochs (test rows excluded)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=DEFAULT)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="run each recipe with these seeds")
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    parser.add_argument(
        "--curves", nargs="+", default=None, help="print per-epoch curves of these run folders"
    )
    args, extra = parser.parse_known_args()
    if args.curves:
        print_curves(args.curves)
        return
    seeds = args.seeds or [None]
    results = []
    for recipe in args.recipes:
        for seed in seeds:
            results.append(run(recipe, seed, extra))
            if args.out:  # after every run, so that an interrupted sweep keeps what it finished
                Path(args.out).write_text(json.dumps(results, indent=2))
    print("| recipe | seed | test VQA accuracy | test exact match | epochs | wall time |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| `{r['recipe']}` | {r['seed']} | {r['test_vqa_acc']:.4f} | {r['test_exact_match']:.4f} | "
            f"{r['epochs']} | {r['wall_s'] / 60:.1f} min |"
        )
    if len(seeds) > 1:
        for recipe in args.recipes:
            accuracy = [r["test_vqa_acc"] for r in results if r["recipe"] == recipe]
            minutes = [r["wall_s"] / 60 for r in results if r["recipe"] == recipe]
            print(
                f"| `{recipe}` | mean ± sd | {statistics.mean(accuracy):.4f} ± {statistics.stdev(accuracy):.4f} | "
                f"| | {statistics.mean(minutes):.1f} min |"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
