"""Speed and memory of vlkit's attention, fusion and vision layers, with references measured beside them.

Usage:
    python scripts/benchmark.py [--device cpu|cuda|auto] [--dtype float32|bfloat16] [--compile]
        [--repeats 10] [--warmup 2] [--max-seconds 5] [--threads N] [--quick] [--only NAME ...]
        [--sections references layers scaling] [--scaling] [--out results.json] [--markdown table.md]

What is measured (three sections, each with its tables; ``--sections`` picks them, by default
references and layers, ``--scaling`` adds scaling; ``--only`` restricts all three to the named
layers):

- **layers**: every attention layer (``MultiHeadAttention`` self and cross, the single-head
  ``Attention`` family, ``HardAttention``), the vision blocks (``CBAM``, ``ChannelAttention``,
  ``SpatialAttention``, ``SpatialTransformer``) and every registered fusion
  (:data:`vlkit.fusion.FUSIONS`, built with ``create_fusion(name, d, d, hidden_dim=d,
  dropout=0)``, other arguments at their defaults, e.g. MCAN depth 6) at two standard sizes:
  VQA (batch 64, 196 = 14×14 regions, 14 tokens, width 512) and captioning (batch 32, 196
  regions, 20 tokens, width 512); the vision blocks get feature maps ``(b, 512, 14, 14)``.
  Text is right-padded with a realistic mask (lengths drawn uniformly from ``[l/3, l]``, the
  first row full, the last l/3 long); regions come with the all-True mask that
  ``vlkit.vision.ImageEncoder`` returns.
  ``CASES`` says what each layer is called on.
- **references** (vlkit / reference ratios; > 1 means vlkit is slower or larger):
  ``MultiHeadAttention`` vs ``torch.nn.MultiheadAttention(batch_first=True)`` with the same
  weights, self-attention over the tokens (text key padding mask) and cross-attention with
  tokens as queries and regions as keys (region key padding mask); ``CBAM`` vs timm's
  ``CbamModule`` (channel MLP and spatial conv copied; timm adds a BatchNorm after the spatial
  conv, set to the identity for the output check, and in training mode it normalises with
  batch statistics, so timm does slightly more work); ``ParallelCoAttention``,
  ``CrossModalAttention``, ``MFBCoAttention`` (fusion ``mfb``) and the ``MFB`` block vs
  plain evaluations of the papers' equations (:mod:`vlkit.testing`:
  ``PlainParallelCoAttention``, ``PlainCrossModalAttention``, ``PlainMFBCoAttention``,
  ``PlainMFB``, also the tests' oracles) with the same weights. Before timing, each pair's
  outputs are checked equal in float32 (``torch.testing.assert_close``, atol 1e-5, rtol
  1e-4); a mismatch stops the run.
  The two modules of a pair are timed interleaved (A, B, A, B, ...), so drift hits both.
- **scaling** (``--scaling``): forward+backward time and peak memory of
  ``ParallelCoAttention``, ``CrossModalAttention`` and ``MultiHeadAttention`` (cross) as the
  regions grow (49, 196, 784, 3136; 14 tokens) and as the tokens grow (8 ... 128; 196
  regions), at batch 16 (the exponent does not depend on the batch, and 3136 regions at
  batch 64 would take minutes per step on a CPU). The growth exponent is the least-squares
  slope of log time against log n (``fit_exponent``); near 1 in both regions and tokens
  means time linear in regions × tokens. Where an n-independent part dominates at small n
  (e.g. the region projections when only the tokens grow) the slope is well below 1, so the
  slopes between consecutive sizes are reported too.

How:

- **forward**: inference, ``module.eval()`` under ``torch.no_grad()`` (so
  ``torch.nn.MultiheadAttention`` may take its fused inference fast path: that is what a user
  gets). **forward+backward**: ``module.train()`` (dropout is 0 everywhere), the sum of the
  primary output (first field of the returned tuple: ``fused``, ``output``, ``context``, or the
  tensor) backpropagated to every parameter and to the float inputs (as in a layer inside a
  network); parameter and input gradients are set to None before each run, outside the timed
  part. Times are the median of ``--repeats`` runs after ``--warmup`` untimed runs, with the
  interquartile range (IQR); CPU times use ``time.perf_counter``, CUDA times
  ``torch.cuda.Event(enable_timing=True)`` around the run and a synchronize. So that slow
  layers (MCAN at depth 6 takes tens of seconds per step on a small CPU) do not hold the run
  for an hour, ``--max-seconds`` (default 5, 0 for none) caps each phase of a measurement:
  warm-up stops once it has taken that long, and the first timed run fixes the number of runs
  to what fits (at least one). The tables give the runs actually made ("runs": forward /
  forward+backward).
- **peak memory** of one forward+backward, in MiB above the memory in use when it starts (so
  it includes activations, parameter and input gradients, not the parameters or inputs). CUDA:
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
  allocated at the start. CPU: the run executes under
  ``torch.profiler.profile(activities=[CPU], profile_memory=True)``; the profiler records one
  memory record per allocation (+bytes) and per free (-bytes) with its timestamp, and
  ``cpu_peak_bytes`` (``bench/measurement.py``) walks these raw records in time order and
  returns the maximum of the running sum. The raw records are read from
  ``prof.profiler.kineto_results`` (a private but long-standing attribute): the public
  ``prof.events()`` attaches each record to the operator running at the time, so walking
  ``FunctionEvent.self_cpu_memory_usage`` nets out memory an operator allocates and frees
  itself and misses frees outside operators, and walking ``cpu_memory_usage`` counts children
  again inside their parents. On ``c = a @ b;
  d = relu(c); d.sum().backward()`` with ``a (512, 1024)``, ``b (1024, 2048)`` float32 (``c``,
  ``d`` and the gradient of ``c`` 4 MiB each, the gradients of ``b`` and ``a`` 8 and 2 MiB: 22 MiB
  at the peak) the raw walk gives 22 MiB, the ``self_cpu_memory_usage`` walk 18 MiB and the
  ``cpu_memory_usage`` walk 54 MiB. If the raw records are missing (another torch version),
  the ``self_cpu_memory_usage`` walk is the fallback and the JSON says so
  (``settings.memory_method``). The tests check the measure against allocations of known size
  and against this forward+backward.
- ``--dtype bfloat16`` runs every forward under ``torch.autocast(device, dtype=bfloat16)``;
  ``--compile`` wraps every module, vlkit's and the reference's alike, in ``torch.compile``
  (at least two warm-up runs: the first compiles; a layer that fails to compile is skipped
  with a "compile failed: ..." note). ``--quick`` uses tiny sizes, one run and no time cap
  (for the tests).

Caveats: CPU timings depend on the thread count (``--threads``; default torch's, recorded in
the JSON) and on other load on the machine (the load average at start and end is recorded);
the IQR shows the spread. On a small machine shared with other jobs, ``--threads 1`` can be
both faster and steadier than one thread per core (docs/performance.md). Under ``--compile`` the
timings exclude compilation. The plain references share vlkit's choice of operations for
each equation (batched matmuls, each product in its cheapest order), so their ratios measure
vlkit's overhead (checks, mask handling, upcasts), not a different algorithm. Peak memory on
CPU counts allocations made through PyTorch's allocator only (not oneDNN/MKL scratch space).

Stable CPU figures: glibc gives freed blocks above its (adaptive) mmap threshold back to the
OS, and a layer whose activations are tens of MiB then page-faults them in again on every call
(12.6k faults per CBAM forward at VQA size: 45 ms instead of 13 ms), so that a rerun could
change a ratio by far more than the layers differ. With ``--allocator tuned`` (the default) the
script re-executes itself once with ``GLIBC_TUNABLES=`` :data:`TUNED_GLIBC` (blocks up to 32 MiB
from the heap, freed memory kept), as a long-running training process reaches by itself; the
tables give the median minor page faults per call beside the times, and the JSON records the
setting (``settings.allocator``). ``--allocator default`` measures with the environment as it is.

Code: this file is the command line; ``scripts/bench/`` holds the rest: ``workloads.py``
(sizes, inputs, ``CASES``, ``REFERENCES``, the output check), ``measurement.py`` (time, peak
memory, medians, growth exponents, the interleaved runner ``measure``), ``sections.py`` (the
sections, ``SECTIONS``) and ``report.py`` (Markdown tables, the device line). The plain
references are :mod:`vlkit.testing`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from bench.measurement import Bench
from bench.report import _load_average, describe_device, device_line
from bench.sections import SECTIONS
from bench.workloads import CASES, CHECK_TOLERANCE, QUICK_SIZES, SIZES

#: glibc malloc settings of ``--allocator tuned``: blocks up to 32 MiB come from the heap (not
#: fresh mmaps), and freed memory is not trimmed back to the OS below 4 GiB.
TUNED_GLIBC = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"


def control_allocator(choice: str, argv: list[str] | None) -> str:
    """Apply ``--allocator``: with ``tuned``, re-execute this script once with
    ``GLIBC_TUNABLES=TUNED_GLIBC`` (glibc reads it at start-up only); return what is in effect."""
    if choice == "default":
        return f"default (GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r})"
    if os.environ.get("GLIBC_TUNABLES") != TUNED_GLIBC:
        if not sys.platform.startswith("linux") or argv is not None:  # not glibc, or called from Python
            return "default (--allocator tuned applies to a command-line run on Linux)"
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "GLIBC_TUNABLES": TUNED_GLIBC})
    return f"tuned (GLIBC_TUNABLES={TUNED_GLIBC})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--compile", action="store_true", help="wrap every module in torch.compile")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median, IQR)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=5.0,
        help="time cap of one measurement phase: slow layers get fewer repeats (at least 1); 0: no cap",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (for the tests)")
    names = sorted(CASES)
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"layers to run: {names}")
    keys = [section.key for section in SECTIONS]
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=keys,
        default=None,
        help=f"sections to run (default: {[s.key for s in SECTIONS if s.default]})",
    )
    parser.add_argument("--scaling", action="store_true", help="add the scaling section")
    parser.add_argument(
        "--data", action="store_true", help="add the data section: loader images/s beside the training step's"
    )
    parser.add_argument(
        "--data-recipe",
        default=str(Path(__file__).resolve().parents[1] / "recipes/vqa/easy_vqa_parallel.yaml"),
        help="the recipe whose data pipeline --data measures",
    )
    parser.add_argument(
        "--data-args",
        default="",
        help='vlkit fit overrides for --data, one string: --data-args="--data.init_args.max_samples 2000"',
    )
    parser.add_argument(
        "--allocator",
        choices=("tuned", "default"),
        default="tuned",
        help="tuned: re-run with GLIBC_TUNABLES that keep freed memory (stable CPU timings); default: as is",
    )
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--markdown", default=None, help="Markdown file for the tables")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    allocator = control_allocator(args.allocator, argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.sections is None:
        args.sections = [section.key for section in SECTIONS if section.default]
    if args.scaling and "scaling" not in args.sections:
        args.sections.append("scaling")
    if args.data and "data" not in args.sections:
        args.sections.append("data")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.quick:
        args.repeats, args.warmup = 1, 0
    if args.compile:
        args.warmup = max(args.warmup, 2)  # the first run compiles, the second shows the compiled time
    bench = Bench(
        device=device,
        autocast_dtype=torch.bfloat16 if args.dtype == "bfloat16" else None,
        compile=args.compile,
        repeats=args.repeats,
        warmup=args.warmup,
        max_seconds=args.max_seconds if args.max_seconds > 0 and not args.quick else None,
        sizes=QUICK_SIZES if args.quick else SIZES,
        only=set(args.only) if args.only else None,
    )
    settings = {
        "dtype": args.dtype,
        "compile": args.compile,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "max_seconds": bench.max_seconds,
        "quick": args.quick,
        "only": args.only,
        "sections": args.sections,
        "sizes": [asdict(s) for s in bench.sizes],
        "check_tolerance": CHECK_TOLERANCE,
        "allocator": allocator,
    }
    info = describe_device(device)
    results: dict[str, Any] = {"device": info, "settings": settings}
    started = time.perf_counter()
    markdown = [f"Device: {device_line(info, settings)}"]
    for section in SECTIONS:
        if section.key in args.sections:
            results[section.key] = section.run(args, bench, results)
            markdown.append(f"### {section.title}\n\n{section.markdown(results[section.key])}")
    settings["memory_method"] = bench.memory_method
    settings["total_s"] = time.perf_counter() - started
    info["load_average_end"] = _load_average()
    text = "\n\n".join(markdown) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
