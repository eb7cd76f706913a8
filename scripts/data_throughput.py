"""Does the training loop wait on data? Images/s of a recipe's data pipeline beside its training step's.

Usage:
    python scripts/data_throughput.py [--recipe recipes/vqa/easy_vqa_parallel.yaml] [--batches 30]
        [--num_workers N ...] [--cache] [--out throughput.json] [extra vlkit fit arguments]

For the recipe's DataModule and task (built by ``vlkit fit``'s parser, nothing is trained):
- **data**: images/s of iterating the training loader (decode, transform, collate, and with
  workers the transfer from the worker processes), for each ``--num_workers``; with ``--cache``
  also of the loader that serves cached backbone features (``cache_features: true``, the cache
  built first and not timed);
- **step**: images/s of one optimisation step (forward, backward, AdamW) on batches already in
  memory, i.e. what the model can consume. The loop waits on data when data < step.
Each figure is the median over ``--batches`` batches after 3 warm-up batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
_clock = time.perf_counter  # the timer (a name of its own, so a test can replace it)


def build_recipe(recipe: str, extra: list[str]):
    """The (datamodule, task) a recipe defines, instantiated without training."""
    from vlkit.cli import cli_main

    cli = cli_main(["--config", recipe, "--trainer.logger", "false", *extra], run=False)
    return cli.datamodule, cli.model


def _median_rate(times: list[float], sizes: list[int]) -> float:
    return statistics.median(n / t for n, t in zip(sizes, times))


def loader_rate(loader, batches: int, warmup: int = 3) -> float:
    """Images/s of iterating ``loader`` (median over ``batches`` batches after ``warmup``)."""
    times, sizes = [], []
    iterator = iter(loader)
    for i in range(warmup + batches):
        start = _clock()
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        elapsed = _clock() - start
        if i >= warmup:
            times.append(elapsed)
            sizes.append(len(batch.label) if hasattr(batch, "label") else batch[0].shape[0])
    return _median_rate(times, sizes)


def step_rate(task, batches: list, steps: int, warmup: int = 3) -> float:
    """Images/s of forward + backward + AdamW step of ``task`` on the in-memory ``batches``."""
    task.train()
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-4)
    times, sizes = [], []
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        start = _clock()
        loss = task._step(batch, "train")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        elapsed = _clock() - start
        if i >= warmup:
            times.append(elapsed)
            sizes.append(len(batch.label))
    return _median_rate(times, sizes)


def measure(recipe: str, batches: int, workers: list[int], cache: bool, extra: list[str]) -> dict:
    """The data and step rates of ``recipe`` (see the module docstring)."""
    import pytorch_lightning as pl

    results: dict = {"recipe": recipe, "threads": torch.get_num_threads(), "data": {}}
    dm, task = build_recipe(recipe, extra)
    task.log = lambda *args, **kwargs: None  # no trainer: the step's logging is a no-op here
    for n in workers:
        dm.num_workers = n
        dm.setup("fit")
        results["data"][f"images, {n} workers"] = round(loader_rate(dm.train_dataloader(), batches), 1)
    held = [b for _, b in zip(range(4), dm.train_dataloader())]
    results["step"] = round(step_rate(task, held, batches), 1)
    if cache:
        pl.seed_everything(0)
        dm.cache_features = True
        start = time.perf_counter()
        dm.cache_image_features(task.model.image_encoder)
        results["cache_build_s"] = round(time.perf_counter() - start, 1)
        for n in workers:
            dm.num_workers = n
            results["data"][f"cached features, {n} workers"] = round(
                loader_rate(dm.train_dataloader(), batches), 1
            )
        held = [b for _, b in zip(range(4), dm.train_dataloader())]
        results["step (cached features)"] = round(step_rate(task, held, batches), 1)
    return results


def table(results: dict) -> str:
    """A Markdown table of the rates."""
    lines = ["| what | images / s |", "|---|---|"]
    lines += [f"| data: {k} | {v} |" for k, v in results["data"].items()]
    lines.append(f"| training step (forward + backward + AdamW) | {results['step']} |")
    if "step (cached features)" in results:
        lines.append(f"| training step on cached features | {results['step (cached features)']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default=str(ROOT / "recipes/vqa/easy_vqa_parallel.yaml"))
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--num_workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", action="store_true", help="also time the cached-feature loader")
    parser.add_argument("--out", default=None)
    args, extra = parser.parse_known_args(argv)
    results = measure(args.recipe, args.batches, args.num_workers, args.cache, extra)
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
