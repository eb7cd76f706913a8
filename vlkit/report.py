"""``vlkit report``: learning curves and the best checkpoint's metrics of a finished run.

Reads the ``metrics.csv`` that Lightning's ``CSVLogger`` writes in a run folder
(``runs/<recipe>/version_N/``; one row per ``log_metrics`` call, columns ``epoch``, ``step`` and
one per metric, empty cells where a row does not log that metric) and writes, to the run folder or
``--out``:

- ``learning_curves.png``: the training loss per step (and its epoch means), the training and
  validation loss per epoch and every validation metric per epoch (with its training value where
  one is logged), the best epoch marked by a dotted line;
- ``summary.md`` and ``summary.json``: the best epoch by the monitored metric, the validation
  metrics at that epoch and the ``test/*`` metrics (``vlkit fit`` tests the best checkpoint after
  training), also printed as a table.

The monitored metric and its mode are those of the run's ``ModelCheckpoint`` (read from the
``config.yaml`` that ``vlkit fit`` saves in the run folder), so the best epoch is the one of
``best-epoch=N.ckpt``; without a config the task metric in :data:`DEFAULT_MONITORS` is used.

Reads CSV and YAML only (no Lightning); matplotlib is imported when a figure is drawn and used
through its object API (``Figure`` with the Agg canvas, no ``pyplot`` state).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MONITORS", "find_run_dir", "read_metrics", "report_main", "write_report"]

log = logging.getLogger(__name__)

#: The metric that picks the best epoch when the run has no ``config.yaml`` with a monitored
#: ``ModelCheckpoint``: the first of these that the run logged, with its mode.
DEFAULT_MONITORS: dict[str, str] = {
    "val/vqa_acc": "max",
    "val/cider_d": "max",
    "val/macro_f1": "max",
    "val/loss": "min",
}

FIGURE_NAME = "learning_curves.png"
PANEL_SIZE = (4.2, 3.0)  # inches per panel
MAX_COLUMNS = 3

Row = dict[str, float | None]


def find_run_dir(path: str | Path) -> Path:
    """The CSVLogger run folder ``path`` names: ``path`` itself if it holds ``metrics.csv``, else
    its latest ``version_N`` subfolder (highest ``N``) that holds one and trained (a ``vlkit test``
    run logs only test metrics; logged at INFO level which was chosen).

    Raises:
        FileNotFoundError: ``path`` does not exist, or neither it nor any ``version_N`` in it
            holds a ``metrics.csv``.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"run folder {str(path)!r} does not exist; give a CSVLogger run folder such as "
            "runs/<recipe>/version_0, or runs/<recipe> for its latest version"
        )
    if (path / "metrics.csv").is_file():
        return path
    versions = [
        (int(match.group(1)), child)
        for child in path.iterdir()
        if (match := re.fullmatch(r"version_(\d+)", child.name)) and (child / "metrics.csv").is_file()
    ]
    if not versions:
        raise FileNotFoundError(
            f"no metrics.csv in {str(path)!r} nor in a version_N folder in it; give the folder of a "
            "run logged with a CSVLogger (runs/<recipe>/version_N) or its parent (runs/<recipe>)"
        )
    trained = [(number, child) for number, child in versions if _trained(child / "metrics.csv")]
    latest = max(trained or versions)[1]
    count = f"{len(versions)} version folders" if len(versions) > 1 else "the only version folder"
    what = "latest that trained" if trained and len(trained) < len(versions) else "latest"
    log.info("%s: reporting %s (%s of %s)", path, latest.name, what, count)
    return latest


def _trained(metrics_csv: Path) -> bool:
    """Whether a CSV log holds any training or validation value (not only a ``vlkit test`` run's)."""
    with open(metrics_csv, newline="") as file:
        for row in csv.DictReader(file):
            if any(value not in ("", None) and key.startswith(("train/", "val/")) for key, value in row.items()):
                return True
    return False


def read_metrics(path: str | Path) -> list[Row]:
    """The rows of a CSVLogger ``metrics.csv`` as dicts of floats, ``None`` for empty cells.

    Raises:
        ValueError: an empty file, or one without ``epoch`` and ``step`` columns.
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"{path} is empty; the run logged no metrics")
        if not {"epoch", "step"} <= set(reader.fieldnames):
            raise ValueError(
                f"{path} has no epoch and step columns ({', '.join(reader.fieldnames)}); "
                "it is not a Lightning CSVLogger metrics.csv"
            )
        return [
            {key: float(value) if value not in ("", None) else None for key, value in row.items()}
            for row in reader
        ]


def _monitor_from_config(run_dir: Path) -> tuple[str, str] | None:
    """``(monitor, mode)`` of the first ``ModelCheckpoint`` with a monitor in ``run_dir/config.yaml``,
    else of its top-level ``monitor`` (the metric ``vlkit fit`` picked the best checkpoint by;
    maximised unless its name ends with ``loss``)."""
    import yaml

    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        return None
    config = yaml.safe_load(config_path.read_text()) or {}
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    for callback in callbacks if isinstance(callbacks, list) else [callbacks]:
        if not isinstance(callback, dict) or not str(callback.get("class_path", "")).endswith(
            "ModelCheckpoint"
        ):
            continue
        init_args = callback.get("init_args") or {}
        if init_args.get("monitor"):
            return init_args["monitor"], init_args.get("mode") or "min"  # ModelCheckpoint's default mode
    monitor = config.get("monitor")
    if isinstance(monitor, str) and monitor:
        return monitor, "min" if monitor.endswith("loss") else "max"
    return None


def _validations(rows: list[Row]) -> list[Row]:
    """One row per validation (rows of the same epoch and step merged), in logging order."""
    merged: dict[tuple[float | None, float | None], Row] = {}
    for row in rows:
        values = {k: v for k, v in row.items() if k.startswith("val/") and v is not None}
        if values and row.get("epoch") is not None:
            merged.setdefault((row["epoch"], row["step"]), {"epoch": row["epoch"], "step": row["step"]})
            merged[(row["epoch"], row["step"])].update(values)
    return list(merged.values())


def _best(validations: list[Row], monitor: str, mode: str) -> Row:
    """The validation with the best finite ``monitor``; the earliest on ties (as ModelCheckpoint)."""
    best = None
    for row in validations:
        value = row.get(monitor)
        if value is None or not math.isfinite(value):
            continue
        if best is None or (value > best[monitor] if mode == "max" else value < best[monitor]):
            best = row
    if best is None:
        raise ValueError(f"{monitor} has no finite value in any validation row")
    return best


def _column(rows: list[Row], key: str, x: str) -> tuple[list[float], list[float]]:
    """``(xs, ys)`` of the rows where ``key`` is logged."""
    pairs = [(row[x], row[key]) for row in rows if row.get(key) is not None and row.get(x) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _is_count(name: str) -> bool:
    """Counters such as ``val/skipped`` (unreadable samples): in the summary, not in the figure."""
    return name.endswith("skipped")


def _plot(rows: list[Row], validations: list[Row], best: Row, monitor: str, title: str, path: Path) -> None:
    """Write the learning-curve grid to ``path`` (PNG): training loss per step, loss per epoch,
    then one panel per validation metric (training value beside it where logged)."""
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in validations]
    # several validations per epoch (val_check_interval < 1): plot against the step instead
    x = "epoch" if len(set(epochs)) == len(epochs) else "step"
    names = {key.removeprefix("val/") for row in validations for key in row if key.startswith("val/")}
    monitored = monitor.removeprefix("val/")
    others = sorted(name for name in names - {"loss", monitored} if not _is_count(name))
    metrics = [monitored] * (monitored != "loss") + others
    panels = 2 + len(metrics)
    lines = math.ceil(panels / MAX_COLUMNS)
    columns = math.ceil(panels / lines)  # 4 panels: 2 × 2, 5: 2 × 3
    figure = Figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * lines), layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False).ravel()

    ax = axes[0]
    step_key = (
        "train/loss_step" if any(row.get("train/loss_step") is not None for row in rows) else "train/loss"
    )
    steps, losses = _column(rows, step_key, "step")
    ends, means = _column(rows, "train/loss_epoch", "step")  # an epoch's mean at its last step
    if steps:
        ax.plot(steps, losses, color="tab:blue", alpha=0.5, linewidth=1, label="per step")
    if ends:
        ax.plot(ends, means, "o-", color="tab:blue", label="epoch mean")
    if not steps and not ends:
        ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set(title="training loss", xlabel="step", ylabel="loss")

    for ax, name in zip(axes[1:], ["loss", *metrics]):
        train_key = "train/loss_epoch" if name == "loss" else f"train/{name}"
        xs, ys = _column(rows, train_key, x)
        if xs:
            ax.plot(xs, ys, "o-", color="tab:blue", label="train")
        xs, ys = _column(validations, f"val/{name}", x)
        ax.plot(xs, ys, "o-", color="tab:orange", label="val")
        ax.axvline(best[x], color="gray", linestyle=":", linewidth=1, label=f"best {x}")
        ax.set(title=name + (" (monitored)" if f"val/{name}" == monitor else ""), xlabel=x, ylabel=name)
        if x == "epoch":
            ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[:panels]:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    for ax in axes[panels:]:
        ax.set_axis_off()
    figure.suptitle(title, fontsize="medium")
    figure.savefig(path, dpi=100)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _table_rows(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(metric, val at the best epoch, test)`` rows: monitored metric first, then loss, then a-z."""
    val = {k.removeprefix("val/"): v for k, v in summary["val"].items()}
    test = {k.removeprefix("test/"): v for k, v in summary["test"].items()}
    first = [summary["monitor"].removeprefix("val/"), "loss"]
    names = [n for n in first if n in val or n in test]
    names += sorted((set(val) | set(test)) - set(names))

    def fmt(name: str, value: float | None) -> str:
        if value is None:
            return "–"
        return f"{value:.0f}" if _is_count(name) else f"{value:.4f}"

    return [(name, fmt(name, val.get(name)), fmt(name, test.get(name))) for name in names]


def _markdown(summary: dict[str, Any]) -> str:
    best = summary["best_epoch"]
    lines = [
        f"# Run report: {summary['run_dir']}",
        "",
        (
            f"Best epoch **{best}** (step {summary['best_step']}) of {summary['validations']} validations, "
            f"by `{summary['monitor']}` ({summary['mode']}, from {summary['monitor_from']})."
        ),
        "",
        f"| metric | val (epoch {best}) | test |",
        "|---|---:|---:|",
        *(f"| {name} | {val} | {test} |" for name, val, test in _table_rows(summary)),
        "",
    ]
    if not summary["test"]:
        lines += ["No test metrics were logged (`--test_after_fit false`?).", ""]
    lines += [f"![learning curves]({FIGURE_NAME})", ""]
    return "\n".join(lines)


def write_report(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    monitor: str | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """Write the learning curves and the best-epoch summary of a CSVLogger run folder.

    Args:
        run_dir: a run folder holding ``metrics.csv`` (``runs/<recipe>/version_N``), or its parent
            (``runs/<recipe>``), whose latest ``version_N`` is used (see :func:`find_run_dir`).
        out_dir: where to write ``learning_curves.png``, ``summary.md`` and ``summary.json``
            (created if missing); default: the run folder.
        monitor: the validation metric that picks the best epoch, e.g. ``"val/vqa_acc"``; default:
            the monitor of the run's ``ModelCheckpoint`` in ``config.yaml``, else the first of
            :data:`DEFAULT_MONITORS` that the run logged.
        mode: ``"max"`` or ``"min"``; default: the checkpoint's mode, or the one in
            :data:`DEFAULT_MONITORS` (``"min"`` for any other metric).

    Returns:
        The summary also written to ``summary.json``: ``run_dir``, ``monitor``, ``mode``,
        ``monitor_from`` (``"argument"``, ``"config.yaml"`` or ``"default"``), ``best_epoch``,
        ``best_step``, ``validations`` (how many), ``val`` (every ``val/*`` metric at the best
        epoch), ``test`` (every ``test/*`` metric, empty if the run was not tested; non-finite
        values are ``None``), plus the paths written: ``figure``, ``markdown``, ``json``.

    Raises:
        FileNotFoundError: no ``metrics.csv`` in ``run_dir`` nor in a ``version_N`` in it.
        ValueError: a ``metrics.csv`` without validation rows (``val/*`` values); a monitored
            metric that the run did not log or that is never finite; ``mode`` not min or max.
    """
    run_dir = find_run_dir(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    if mode is not None and mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
    rows = read_metrics(run_dir / "metrics.csv")
    validations = _validations(rows)
    if not validations:
        raise ValueError(
            f"{run_dir / 'metrics.csv'} has no validation rows (no val/* values): the run stopped "
            "before its first validation, or validation was off (limit_val_batches 0)"
        )
    logged = sorted({key for row in validations for key in row if key.startswith("val/")})
    if monitor is not None:
        monitor_from = "argument"
        mode = mode or DEFAULT_MONITORS.get(monitor, "min")
    elif (configured := _monitor_from_config(run_dir)) is not None:
        monitor_from = "config.yaml"
        monitor, mode = configured[0], mode or configured[1]
    else:
        monitor_from = "default"
        monitor = next((name for name in DEFAULT_MONITORS if name in logged), None)
        if monitor is None:
            raise ValueError(
                f"none of the default monitored metrics ({', '.join(DEFAULT_MONITORS)}) was logged; "
                f"pick one of {', '.join(logged)} with --monitor"
            )
        mode = mode or DEFAULT_MONITORS[monitor]
    if monitor not in logged:
        raise ValueError(
            f"the monitored metric {monitor!r} (from {monitor_from}) is not in the validation rows "
            f"of {run_dir / 'metrics.csv'}; logged: {', '.join(logged)}"
        )
    best = _best(validations, monitor, mode)
    test: dict[str, float | None] = {}
    for row in rows:  # the test after fit; later rows win
        test.update({k: _finite(v) for k, v in row.items() if k.startswith("test/") and v is not None})
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "monitor": monitor,
        "mode": mode,
        "monitor_from": monitor_from,
        "best_epoch": int(best["epoch"]),
        "best_step": int(best["step"]) if best["step"] is not None else None,
        "validations": len(validations),
        "val": {k: _finite(v) for k, v in sorted(best.items()) if k.startswith("val/")},
        "test": dict(sorted(test.items())),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    figure = out_dir / FIGURE_NAME
    title = f"{run_dir.parent.name}/{run_dir.name}: best epoch {summary['best_epoch']} by {monitor} ({mode})"
    _plot(rows, validations, best, monitor, title, figure)
    (out_dir / "summary.md").write_text(_markdown(summary))
    summary.update(
        figure=str(figure), markdown=str(out_dir / "summary.md"), json=str(out_dir / "summary.json")
    )
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def report_main(args: list[str] | None = None) -> dict[str, Any]:
    """``vlkit report RUN_DIR [--out DIR]``: learning curves and best-epoch summary of a run
    (:func:`write_report`); prints the summary table.

    Raises:
        FileNotFoundError, ValueError: as :func:`write_report`.
    """
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(prog="vlkit report", description=report_main.__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="runs/<recipe>/version_N, or runs/<recipe> for its latest version")
    parser.add_argument(
        "--out", help="folder for learning_curves.png, summary.md, summary.json (default: RUN_DIR)"
    )
    parser.add_argument("--monitor", help="metric that picks the best epoch (default: the checkpoint's)")
    parser.add_argument("--mode", choices=("min", "max"), help="min or max (default: the checkpoint's)")
    opts = parser.parse_args(args)
    summary = write_report(opts.run_dir, opts.out, monitor=opts.monitor, mode=opts.mode)
    best = summary["best_epoch"]
    console = Console()
    console.print(summary["run_dir"], markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"best epoch {best} of {summary['validations']} validations by {summary['monitor']} "
        f"({summary['mode']}, from {summary['monitor_from']})",
        markup=False,
        highlight=False,
    )
    table = Table()
    table.add_column("metric")
    table.add_column(f"val (epoch {best})", justify="right")
    table.add_column("test" if summary["test"] else "test (not run)", justify="right")
    for row in _table_rows(summary):
        table.add_row(*row)
    console.print(table)
    for key in ("figure", "markdown", "json"):
        console.print(f"wrote {summary[key]}", style="dim", markup=False, highlight=False, soft_wrap=True)
    return summary
