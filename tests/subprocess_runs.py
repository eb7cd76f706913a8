"""Helpers of the tests that run vlkit in a fresh Python process (resume, DDP, offline predict)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run_python(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with the repository importable, one torch thread, the extra
    environment ``env`` and no distributed launcher variables inherited (they would make a
    training run try to join the pytest process's group); output captured, 10 minutes at most."""
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for key in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        environment.pop(key, None)
    environment.update({"OMP_NUM_THREADS": "1", **env})
    return subprocess.run(
        [sys.executable, *args],
        check=False,
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )


def epoch_metrics(run: Path) -> dict[int | str, dict[str, float]]:
    """``{epoch: {metric: value}}`` of the validation rows of a CSVLogger run folder, and
    ``{"test": {metric: value}}`` of its test row (the best checkpoint's, evaluated after fit)."""
    rows: dict[int | str, dict[str, float]] = {}
    with open(run / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for key, prefix in ((row["epoch"], "val/"), ("test", "test/")):
                values = {k: float(v) for k, v in row.items() if k.startswith(prefix) and v}
                if values:
                    rows[int(key) if prefix == "val/" else key] = values
    return rows
