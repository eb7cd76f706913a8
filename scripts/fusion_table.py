"""The full-schedule fusion table of ``docs/fusion_comparison.md`` from finished easy-VQA runs.

Usage:
    python scripts/fusion_table.py results.json [more.json ...] [--times times.json] [--limit 2000]
        [--markdown table.md]
    python scripts/fusion_table.py --time recipes/vqa/easy_vqa_*.yaml [--steps 60] --out times.json

The JSON files are what ``scripts/easy_vqa_results.py --out`` writes (one entry per recipe and
seed). For each recipe the table gives: the seeds and their test VQA accuracy, mean ± sample
sd; the epochs to reach 0.95 validation accuracy (mean over seeds; ">8" when a seed never did);
the trainable parameters (the model without its frozen backbone, from the seed-0 checkpoint);
the share of the region attention on the shape over ``--limit`` test questions against the
uniform share (``scripts/attention_on_object.py``, seed-0 best checkpoint; "n/a" for a fusion
without region attention); and, with ``--times``, the training seconds per epoch.

``--time`` measures those seconds: for each recipe one ``vlkit fit`` of ``--steps`` training
steps (no validation or test, features cached as the recipe trains), the loop's seconds per
step after its first 10 steps times the 543 steps of an easy-VQA epoch. Run it with nothing
else on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
STEPS_PER_EPOCH = 543  # easy-VQA's 34,675 training questions (less the held-out ones) / 64


def epochs_to(curve: list[float], level: float = 0.95) -> int | None:
    """The number of epochs after which validation accuracy first reached ``level`` (None: never)."""
    return next((i + 1 for i, value in enumerate(curve) if value >= level), None)


def trainable_parameters(run_dir: Path) -> int | None:
    """Parameters of the task that train (the frozen backbone excluded), from the run's best checkpoint."""
    from vlkit.tasks import load_task

    found = sorted((ROOT / run_dir / "checkpoints").glob("best*.ckpt"))
    if not found:
        return None
    task = load_task(found[-1])
    return sum(p.numel() for p in task.parameters() if p.requires_grad)


def attention_share(run_dir: Path, limit: int) -> dict | None:
    from attention_on_object import measure

    found = sorted((ROOT / run_dir / "checkpoints").glob("best*.ckpt"))
    if not found:
        return None
    try:
        return measure(str(found[-1]), limit, threshold=60.0, batch_size=256)
    except SystemExit:  # a fusion without region attention
        return None


def table(results: list[dict], times: dict[str, float], limit: int) -> str:
    by_recipe: dict[str, list[dict]] = {}
    for row in results:
        by_recipe.setdefault(row["recipe"], []).append(row)
    lines = [
        (
            "| recipe | seeds | test VQA accuracy per seed | mean ± sd | epochs to 0.95 val | s / epoch | "
            "trainable params | attention on shape (uniform) |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for recipe, rows in sorted(by_recipe.items()):
        rows = sorted(rows, key=lambda r: r["seed"])
        accuracy = [r["test_vqa_acc"] for r in rows]
        spread = (
            f"{statistics.mean(accuracy):.4f} ± {statistics.stdev(accuracy):.4f}" if len(rows) > 1 else "n/a"
        )
        reached = [epochs_to(r["val_vqa_acc"]) for r in rows]
        to_95 = (
            f"{statistics.mean(reached):.1f}"
            if all(reached)
            else f"{sum(1 for e in reached if e is None)} of {len(reached)} never"
        )
        first = Path(rows[0]["run_dir"])
        params = trainable_parameters(first)
        share = attention_share(first, limit)
        shown = (
            "n/a" if share is None else f"{share['attention on shape']:.3f} ({share['uniform baseline']:.3f})"
        )
        seconds = times.get(recipe)
        lines.append(
            f"| `{Path(recipe).name}` | {', '.join(str(r['seed']) for r in rows)} | "
            f"{', '.join(f'{a:.4f}' for a in accuracy)} | {spread} | {to_95} | "
            f"{'n/a' if seconds is None else f'{seconds:.0f}'} | {'n/a' if params is None else f'{params:,}'} | {shown} |"
        )
    return "\n".join(lines)


def time_recipes(recipes: list[str], steps: int) -> dict[str, float]:
    """Training seconds per easy-VQA epoch of each recipe, from ``steps`` steps without a progress bar."""
    import tempfile

    from progress_bar_cost import seconds_per_step

    seconds = {}
    with tempfile.TemporaryDirectory() as workdir:
        for recipe in recipes:
            seconds[recipe] = seconds_per_step(recipe, steps, "none", workdir) * STEPS_PER_EPOCH
            print(f"{recipe}: {seconds[recipe]:.1f} s / epoch", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> str | dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", help="JSON files of scripts/easy_vqa_results.py --out")
    parser.add_argument("--times", help="JSON of --time (seconds per epoch by recipe)")
    parser.add_argument("--limit", type=int, default=2000, help="test questions for the attention share")
    parser.add_argument("--markdown", help="also write the table here")
    parser.add_argument(
        "--time", nargs="+", metavar="RECIPE", help="measure seconds per epoch of these recipes"
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out", help="with --time: the JSON to write")
    opts = parser.parse_args(argv)
    if opts.time:
        seconds = time_recipes(opts.time, opts.steps)
        if opts.out:
            Path(opts.out).write_text(json.dumps(seconds, indent=2))
        return seconds
    results = [row for path in opts.results for row in json.loads(Path(path).read_text())]
    times = json.loads(Path(opts.times).read_text()) if opts.times else {}
    text = table(results, times, opts.limit)
    print(text)
    if opts.markdown:
        Path(opts.markdown).write_text(text + "\n")
    return text


if __name__ == "__main__":
    main()
