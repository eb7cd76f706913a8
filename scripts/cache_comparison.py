"""A recipe trained with and without feature caching: seconds per epoch and final test metrics.

Usage:
    python scripts/cache_comparison.py [--recipe recipes/vqa/easy_vqa_parallel.yaml] [--epochs 8]
        [--out cache.json] [--markdown cache.md] [extra vlkit fit arguments]

Runs ``vlkit fit --config RECIPE`` twice, each in a fresh Python process (so neither run
starts with the other's warm caches or state), the second time with
``--data.init_args.cache_features true`` (the recipe must freeze its backbone), same seed; logs
go to ``runs/cache_comparison/{images,cached}/``. Printed: training seconds per epoch (validation
excluded), the time to build the feature cache (the setup before the first epoch; 0 when it was
already on disk), whole-run seconds, and the test metrics. With a fixed seed the two runs
flip, shuffle and drop out the same samples, so their metrics should agree up to floating-point
differences of the batched backbone evaluation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recipe_runs, when imported from elsewhere

from recipe_runs import run_many, run_recipe

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = {
    "name": "run",
    "train_s_per_epoch": "train s / epoch",
    "wall_s": "whole run s (cache build, validation, test included)",
    "metric": "test metric",
    "value": "value",
}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--metric", default="test_vqa_acc", help="the result key shown in the table")
    parser.add_argument("--out", default=None)
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--log-root", default="runs/cache_comparison")
    parser.add_argument("--single", choices=["images", "cached"], help=argparse.SUPPRESS)  # a child run
    args, extra = parser.parse_known_args(argv)

    if args.single:  # in the child process: one run, its figures to --out
        cache = ["--data.init_args.cache_features", "true"] if args.single == "cached" else []
        start = time.perf_counter()
        result = run_recipe(args.recipe, args.single, args.log_root, args.epochs, [*extra, *cache])
        result["wall_s"] = round(time.perf_counter() - start, 1)
        result["metric"], result["value"] = args.metric, result.get(args.metric)
        Path(args.out).write_text(json.dumps(result))
        return [result]

    def run_one(name: str) -> dict:
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / "result.json"
            command = [sys.executable, __file__, "--single", name, "--out", str(out)]
            command += ["--recipe", args.recipe, "--epochs", str(args.epochs), "--metric", args.metric]
            subprocess.run([*command, "--log-root", args.log_root, *extra], check=True)
            return json.loads(out.read_text())

    return run_many(["images", "cached"], run_one, COLUMNS, args.out, args.markdown)


if __name__ == "__main__":
    main()
