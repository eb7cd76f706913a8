"""``vlkit predict`` over many inputs: reading a folder, a glob or a CSV / JSONL table of inputs,
and writing the predictions as JSONL or CSV."""

from __future__ import annotations

import csv
import glob
import json
import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image

__all__ = [
    "IMAGE_SUFFIXES",
    "check_output_path",
    "parse_device",
    "prediction_record",
    "read_inputs",
    "write_predictions",
]

#: File suffixes that a folder or glob of images contributes (case-insensitive): what Pillow reads.
IMAGE_SUFFIXES = frozenset(suffix for suffix, _ in Image.registered_extensions().items())


def parse_device(name: str) -> torch.device:
    """The ``torch.device`` of ``--device`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``, ...).

    Raises:
        ValueError: not a device name, or an accelerator that this machine does not have.
    """
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(
            f"--device {name!r} is not a device name (e.g. cpu, cuda, cuda:1, mps): {err}"
        ) from None
    if device.type == "cuda" and (
        not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()
    ):
        raise ValueError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s); use --device cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine; use --device cpu")
    return device


def read_inputs(spec: str, text_field: str | None, text: str | None) -> list[dict[str, str | None]]:
    """The inputs that ``--inputs spec`` names, one ``{"image": path, text_field: text}`` per input.

    ``spec`` is a folder (its image files, sorted by name), a glob pattern (``"photos/*.jpg"``,
    quoted for the shell), or a ``.csv`` / ``.jsonl`` file with an ``image`` column (a path,
    relative to the table's folder unless absolute) and, for a task that reads text, a
    ``text_field`` column (``question`` for VQA, ``text`` for sentiment). For a folder or glob,
    ``text`` (``--question`` / ``--text``) goes with every image; in a table a row's own cell wins
    and an empty or missing cell takes ``text``.

    Raises:
        FileNotFoundError: nothing matches ``spec``, or images that do not exist (all named).
        ValueError: a table without an ``image`` column, a row without its text when ``text`` is
            None, a malformed JSONL line, or a non-string cell (each names its row).
    """
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() in (".csv", ".jsonl"):
        rows = _read_table(path, text_field, text)
    elif path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise FileNotFoundError(f"--inputs {spec!r}: the folder holds no image file ({_SUFFIX_HINT})")
        rows = [_row(str(p), text_field, text, f"image {p}") for p in images]
    elif path.is_file():
        raise ValueError(
            f"--inputs {spec!r}: a file must be a .csv or .jsonl table; for one image use --image"
        )
    else:
        matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
        images = [m for m in matches if Path(m).is_file() and Path(m).suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            raise FileNotFoundError(
                f"--inputs {spec!r} is not a folder or a .csv / .jsonl file, and as a glob pattern it matches "
                f"no image file ({len(matches)} match(es); {_SUFFIX_HINT})"
            )
        rows = [_row(m, text_field, text, f"image {m}") for m in images]
    missing = [row["image"] for row in rows if not Path(str(row["image"])).is_file()]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise FileNotFoundError(f"--inputs {spec!r}: {len(missing)} image(s) do not exist: {shown}")
    return rows


_SUFFIX_HINT = "image files are those Pillow reads, e.g. .png, .jpg, .webp"


def _row(image: str, text_field: str | None, text: Any, where: str) -> dict[str, str | None]:
    row: dict[str, str | None] = {"image": image}
    if text_field is not None:
        if text in (None, ""):
            raise ValueError(
                f"{where}: no {text_field}; give a {text_field} column or --{text_field} for every row"
            )
        if not isinstance(text, str):
            raise ValueError(
                f"{where}: the {text_field} must be a string, got {type(text).__name__} {text!r}"
            )
        row[text_field] = text
    return row


def _read_table(path: Path, text_field: str | None, text: str | None) -> list[dict[str, str | None]]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as file:
            records = list(csv.DictReader(file))
    else:
        records = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"--inputs {str(path)!r}, line {number}: not a JSON object ({err})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(  # noqa: TRY004 — a bad input file is a bad value
                    f"--inputs {str(path)!r}, line {number}: expected a JSON object, got {record!r}"
                )
            records.append(record)
    if not records:
        raise ValueError(f"--inputs {str(path)!r} has no rows")
    rows = []
    for number, record in enumerate(records, start=1):
        where = f"--inputs {str(path)!r}, row {number}"
        image = record.get("image")
        if not isinstance(image, str) or not image:
            columns = sorted(record)
            raise ValueError(f"{where}: no image path in an 'image' column (columns: {columns})")
        image_path = Path(image).expanduser()
        if not image_path.is_absolute():
            image_path = path.parent / image_path
        cell = record.get(text_field) if text_field is not None else None
        rows.append(_row(str(image_path), text_field, text if cell in (None, "") else cell, where))
    return rows


def prediction_record(row: dict[str, Any], prediction: Any) -> dict[str, Any]:
    """One output record: the input ``row`` and the prediction's fields, without attention tensors
    (answer / caption / label, score, the ranked lists, the unknown words)."""
    fields = {
        k: v for k, v in prediction._asdict().items() if not isinstance(v, torch.Tensor) and v is not None
    }
    fields.pop("grid_size", None)
    for key in ("answers", "probabilities"):
        if key in fields:
            fields[key] = [[name, round(float(p), 6)] for name, p in fields[key]]
    for key in ("score", "log_prob"):
        if key in fields:
            fields[key] = round(float(fields[key]), 6)
    return {**row, **fields}


def check_output_path(path: str | Path) -> str:
    """The lower-case suffix of an ``--output`` path: ``.jsonl`` or ``.csv``.

    Raises:
        ValueError: another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise ValueError(f"--output {str(path)!r}: write predictions to a .jsonl or .csv file")
    return suffix


def write_predictions(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Write ``records`` to ``path``: ``.jsonl`` one JSON object per line, ``.csv`` one row per
    record (lists as JSON text). The folder is created.

    Raises:
        ValueError: another suffix.
    """
    suffix = check_output_path(path)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".jsonl":
        with open(path, "w", encoding="utf-8") as file:
            file.writelines(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
        return path
    columns = list(dict.fromkeys(key for record in records for key in record))
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        for record in records:
            writer.writerow(
                {
                    k: json.dumps(v, ensure_ascii=False) if isinstance(v, list) else v
                    for k, v in record.items()
                }
            )
    return path
