"""Run a recipe in this process with overrides, timing its training epochs: shared by
``vision_ablation.py``, ``fusion_comparison.py`` and ``sentiment_results.py``.

``run_recipe(recipe, name, log_root, epochs, overrides)`` runs ``vlkit fit --config RECIPE``
(test after fit, as the recipes ask) as the run ``LOG_ROOT/NAME/`` (a CSV logger, the checkpoints
in ``LOG_ROOT/NAME/checkpoints``) and returns
the test metrics (``test_vqa_acc`` for VQA, every ``test/*`` metric as ``test_*``), training
seconds per epoch (validation excluded) and parameter counts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from pytorch_lightning.callbacks import Callback


class EpochTimer(Callback):
    """Seconds of each training epoch (validation excluded)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0
        self._val = 0.0
        self._val_start = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._val = time.perf_counter(), 0.0

    def on_validation_start(self, trainer, pl_module) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        self._val += time.perf_counter() - self._val_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds.append(time.perf_counter() - self._start - self._val)


def run_recipe(recipe: str, name: str, log_root: str, epochs: int, overrides: list[str]) -> dict:
    """Train ``recipe`` for ``epochs`` with extra ``vlkit fit`` arguments; return its figures."""
    from vlkit.cli import cli_main

    args = [
        "fit",
        "--config",
        recipe,
        "--trainer.max_epochs",
        str(epochs),
        "--trainer.enable_progress_bar",
        "false",
        "--runs_dir",
        log_root,
        "--run_name",
        name,
        "--trainer.logger",
        yaml.safe_dump(
            {
                "class_path": "pytorch_lightning.loggers.CSVLogger",
                "init_args": {"save_dir": log_root, "name": name},
            },
            default_flow_style=True,
        ).strip(),
        "--trainer.callbacks+=recipe_runs.EpochTimer",
        *overrides,
    ]
    cli = cli_main(args)
    timer = next(c for c in cli.trainer.callbacks if isinstance(c, EpochTimer))
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
    model = cli.model.model
    tested = {k.replace("/", "_"): v for k, v in metrics.items() if k.startswith("test/")}
    return {
        "name": name,
        "test_vqa_acc": metrics.get("test/vqa_acc"),
        **tested,
        "epochs": cli.trainer.current_epoch,
        "train_s_per_epoch": round(sum(timer.seconds) / max(len(timer.seconds), 1), 3),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "fusion_params": sum(p.numel() for p in model.fusion.parameters()),
        "seconds": round(sum(timer.seconds), 1),
        "log_dir": cli.trainer.logger.log_dir,
    }


def markdown_table(rows: list[dict], columns: dict[str, str]) -> str:
    """A Markdown table of ``rows`` with ``columns`` = {key: header}; floats < 1 get 4 decimals,
    integers thousands separators, None 'n/a'."""

    def cell(value) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float) and value < 1:
            return f"{value:.4f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(key)) for key in columns) + " |" for row in rows]
    return "\n".join(lines)


def run_many(
    names: list[str],
    run_one: Callable[[str], dict],
    columns: dict[str, str],
    out: str | None,
    markdown: str | None,
) -> list[dict]:
    """``run_one`` each name in turn, saving the results so far to the JSON file ``out`` after
    each (a later failure keeps them); print the Markdown table (and write it to ``markdown``)."""
    results = []
    for name in names:
        results.append(run_one(name))
        if out:
            Path(out).write_text(json.dumps(results, indent=2))
    table = markdown_table(results, columns)
    print(table)
    if markdown:
        Path(markdown).write_text(table + "\n")
    return results


def recipe_epochs(recipe: str | Path) -> int:
    """``trainer.max_epochs`` of a recipe file that sets it itself (not through ``base:``)."""
    return int(yaml.safe_load(Path(recipe).read_text())["trainer"]["max_epochs"])
