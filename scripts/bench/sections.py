"""The benchmark's sections: each runs, returns JSON-able results, and renders Markdown."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from bench.measurement import Bench, Measurement, fit_exponent, measure
from bench.report import _fmt, _ratio_line, layers_markdown, references_markdown, scaling_markdown
from bench.workloads import (
    CASES,
    REFERENCES,
    SCALING_LAYERS,
    Inputs,
    Workload,
    check_same_output,
    make_inputs,
    scaling_sizes,
)

SCRIPTS = Path(__file__).resolve().parents[1]  # scripts/, where data_throughput.py is


def _build(name: str, x: Inputs) -> Workload:
    torch.manual_seed(0)  # the same weights at every run
    return CASES[name].build(x)


def run_references(bench: Bench) -> list[dict]:
    """Each layer of :data:`REFERENCES` beside its reference, at every size: check equal, then measure."""
    rows = []
    for size in bench.sizes:
        x = make_inputs(size, bench.device)
        for name in bench.selected(REFERENCES):
            vl = _build(name, x)
            ref = REFERENCES[name].build(vl, x)
            max_diff = check_same_output(vl, ref)
            vl_m, ref_m = measure([vl, ref], bench)
            ratio = {
                key: getattr(vl_m, key) / getattr(ref_m, key)
                if getattr(vl_m, key) is not None and getattr(ref_m, key)
                else None
                for key in ("forward_ms", "train_ms", "peak_mib")
            }
            rows.append(
                {
                    "layer": name,
                    "reference": REFERENCES[name].name,
                    "size": size.name,
                    "max_abs_diff": max_diff,
                    "vlkit": asdict(vl_m),
                    "ref": asdict(ref_m),
                    "ratio": ratio,
                }
            )
            _log(f"reference {name} @ {size.name}: {_ratio_line(rows[-1])}")
    return rows


def run_layers(bench: Bench, paired: list[dict] | None = None) -> list[dict]:
    """Every layer of :data:`CASES` at every size; layers measured beside a reference reuse that measurement."""
    measured = {(row["layer"], row["size"]): row["vlkit"] for row in paired or []}
    rows = []
    for size in bench.sizes:
        x = make_inputs(size, bench.device)
        for name in bench.selected(CASES):
            case = CASES[name]
            if (name, size.name) in measured:
                result = measured[(name, size.name)]
            else:
                try:
                    workload = _build(name, x)
                except Exception as err:  # noqa: BLE001 - reported in the table, not fatal
                    result = asdict(Measurement(note=f"build failed: {type(err).__name__}: {err}"[:200]))
                else:
                    result = asdict(measure([workload], bench)[0])
            rows.append(
                {
                    "layer": name,
                    "group": case.group,
                    "size": size.name,
                    "description": case.description,
                    **result,
                }
            )
            _log(f"layer {name} @ {size.name}: {_fmt(result['forward_ms'])} / {_fmt(result['train_ms'])} ms")
    return rows


def run_scaling(bench: Bench, quick: bool = False) -> dict:
    """Forward+backward time and peak memory of :data:`SCALING_LAYERS` as regions / tokens grow; exponents."""
    points, exponents = [], []
    for axis, sizes in scaling_sizes(quick).items():
        inputs = [make_inputs(size, bench.device) for size in sizes]
        for name in bench.selected(SCALING_LAYERS):
            ns, ts, ms = [], [], []
            for size, x in zip(sizes, inputs):
                result = measure([_build(name, x)], bench, forward=False)[0]
                n = size.regions if axis == "regions" else size.tokens
                points.append({"layer": name, "axis": axis, "n": n, "size": asdict(size), **asdict(result)})
                if result.train_ms is not None:
                    ns.append(n)
                    ts.append(result.train_ms)
                    ms.append(result.peak_mib)
                _log(f"scaling {name} {axis}={n}: {_fmt(result.train_ms)} ms")
            if len(ns) >= 2:
                local = [fit_exponent(ns[i : i + 2], ts[i : i + 2])[0] for i in range(len(ns) - 1)]
                exponents.append(
                    {
                        "layer": name,
                        "axis": axis,
                        "time_exponent": fit_exponent(ns, ts)[0],
                        "memory_exponent": fit_exponent(ns, ms)[0] if min(ms) > 0 else None,
                        "local_time_exponents": local,
                        "n": ns,
                    }
                )
    return {"batch": inputs[0].size.batch if points else None, "points": points, "exponents": exponents}


@dataclass(frozen=True)
class Section:
    """One part of the benchmark: its name, whether it runs by default, how it runs and reads in Markdown."""

    key: str  # its name for --sections and its key in the JSON
    title: str  # its Markdown heading
    default: bool  # runs when --sections is not given
    run: Callable[[argparse.Namespace, Bench, dict], Any]  # (args, bench, results so far) -> results
    markdown: Callable[[Any], str]


#: The sections, in run order; ``--sections`` picks some, ``--scaling`` adds "scaling". To
#: benchmark something else (e.g. the data pipeline), add a Section here (``default=False``
#: for an opt-in one) and, if wanted, a shorthand flag like ``--scaling`` in ``main``.
SECTIONS: list[Section] = [
    Section(
        "references",
        "vlkit vs references (ratios vlkit / reference; > 1: vlkit slower or larger)",
        True,
        lambda args, bench, results: run_references(bench),
        references_markdown,
    ),
    Section(
        "layers",
        "Layers at the standard sizes",
        True,
        lambda args, bench, results: run_layers(bench, results.get("references")),
        layers_markdown,
    ),
    Section(
        "scaling",
        "Scaling with regions and tokens (forward+backward)",
        False,
        lambda args, bench, results: run_scaling(bench, args.quick),
        scaling_markdown,
    ),
    Section(
        "data",
        "Data pipeline vs training step (images / s; scripts/data_throughput.py)",
        False,
        lambda args, bench, results: run_data(args),
        lambda result: data_table(result),
    ),
]


def run_data(args: argparse.Namespace) -> dict:
    """images/s of the recipe's training loader (0 and 1 workers, and from cached features)
    beside its training step's (see ``scripts/data_throughput.py``)."""
    sys.path.insert(0, str(SCRIPTS))
    from data_throughput import measure

    batches = 2 if args.quick else 30
    return measure(args.data_recipe, batches, [0, 1], cache=True, extra=shlex.split(args.data_args))


def data_table(result: dict) -> str:
    sys.path.insert(0, str(SCRIPTS))
    from data_throughput import table

    return f"Recipe {result['recipe']}, {result['threads']} torch threads.\n\n{table(result)}"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
