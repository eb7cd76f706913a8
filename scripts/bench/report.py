"""The benchmark's output: Markdown tables of each section, and the machine it ran on."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:,.{digits}f}{unit}"


def _fmt_iqr(value: float | None, iqr: float | None) -> str:
    return "n/a" if value is None else f"{_fmt(value)} ± {_fmt(iqr)}"


def _ratio_line(row: dict) -> str:
    return ", ".join(
        f"{k.removesuffix('_ms').removesuffix('_mib')} ×{_fmt(v)}" for k, v in row["ratio"].items()
    )


def _runs(m: dict) -> str:
    """Timed runs of a measurement: ``forward / fwd+bwd``, or just fwd+bwd."""
    forward = m.get("forward_repeats")
    return f"{forward} / {m['train_repeats']}" if forward else str(m["train_repeats"])


def _faults(vl: dict, ref: dict) -> str:
    """Median minor page faults per call, ``vlkit : reference``, forward then forward+backward."""

    def pair(key: str) -> str:
        a, b = vl.get(key), ref.get(key)
        return "n/a" if a is None or b is None else f"{a:,.0f} : {b:,.0f}"

    return f"{pair('forward_faults')}; {pair('train_faults')}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from a header and rows of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def layers_markdown(rows: list[dict]) -> str:
    header = ["layer", "size", "forward ms (± IQR)", "fwd+bwd ms (± IQR)", "runs", "peak fwd+bwd MiB", "note"]
    body = [
        [
            r["layer"],
            r["size"],
            _fmt_iqr(r["forward_ms"], r["forward_iqr_ms"]),
            _fmt_iqr(r["train_ms"], r["train_iqr_ms"]),
            _runs(r),
            _fmt(r["peak_mib"]),
            r["note"] or "",
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def references_markdown(rows: list[dict]) -> str:
    header = [
        "layer",
        "reference",
        "size",
        "fwd ms vlkit",
        "fwd ms ref",
        "fwd vlkit/ref",
        "fwd+bwd ms vlkit",
        "fwd+bwd ms ref",
        "fwd+bwd vlkit/ref",
        "runs",
        "peak MiB vlkit",
        "peak MiB ref",
        "peak vlkit/ref",
        "page faults / call vlkit : ref (fwd; fwd+bwd)",
        "max abs diff",
    ]
    body = []
    for r in rows:
        vl, ref, ratio = r["vlkit"], r["ref"], r["ratio"]
        note = "; ".join(f"{side}: {m['note']}" for side, m in (("vlkit", vl), ("ref", ref)) if m["note"])
        body.append(
            [
                r["layer"],
                r["reference"] + (f" ({note})" if note else ""),
                r["size"],
                _fmt_iqr(vl["forward_ms"], vl["forward_iqr_ms"]),
                _fmt_iqr(ref["forward_ms"], ref["forward_iqr_ms"]),
                _fmt(ratio["forward_ms"]),
                _fmt_iqr(vl["train_ms"], vl["train_iqr_ms"]),
                _fmt_iqr(ref["train_ms"], ref["train_iqr_ms"]),
                _fmt(ratio["train_ms"]),
                _runs(vl),
                _fmt(vl["peak_mib"]),
                _fmt(ref["peak_mib"]),
                _fmt(ratio["peak_mib"]),
                _faults(vl, ref),
                f"{r['max_abs_diff']:.1e}",
            ]
        )
    return markdown_table(header, body)


def scaling_markdown(result: dict) -> str:
    points = markdown_table(
        ["layer", "axis", "n", "fwd+bwd ms (± IQR)", "runs", "peak MiB"],
        [
            [
                p["layer"],
                p["axis"],
                str(p["n"]),
                _fmt_iqr(p["train_ms"], p["train_iqr_ms"]),
                _runs(p),
                _fmt(p["peak_mib"]),
            ]
            for p in result["points"]
        ],
    )
    exponents = markdown_table(
        ["layer", "grows", "time exponent (fit)", "between consecutive sizes", "memory exponent (fit)"],
        [
            [
                e["layer"],
                f"{e['axis']} {e['n'][0]}…{e['n'][-1]}",
                f"{e['time_exponent']:.2f}",
                ", ".join(f"{p:.2f}" for p in e["local_time_exponents"]),
                "n/a" if e["memory_exponent"] is None else f"{e['memory_exponent']:.2f}",
            ]
            for e in result["exponents"]
        ],
    )
    return f"Batch {result['batch']}.\n\n{points}\n\nGrowth exponents (slope of log value vs log n):\n\n{exponents}"


def describe_device(device: torch.device) -> dict:
    """The machine: CPU model, cores, torch threads and version; GPU name on CUDA."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "device": device.type,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": _load_average(),  # other work on the machine slows the timings
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def device_line(info: dict, settings: dict) -> str:
    """One line naming the machine and the settings, for the Markdown and the console."""
    where = (
        info.get("gpu") or f"{info['cpu']} ({info['cpu_count']} cores, {info['torch_threads']} torch threads)"
    )
    cap = f", at most {settings['max_seconds']:g} s per measurement" if settings["max_seconds"] else ""
    return (
        f"{info['device']}: {where}; torch {info['torch']}; dtype {settings['dtype']}; "
        f"compile {settings['compile']}; median of {settings['repeats']} runs after {settings['warmup']} "
        f"warm-up{cap}; load average at start {info['load_average_start']}"
    )
