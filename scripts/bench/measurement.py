"""How the benchmark measures: wall time (median and IQR), peak memory, growth exponents, and
:func:`measure`, which runs several workloads interleaved under one :class:`Bench`'s settings.
"""

from __future__ import annotations

import math
import statistics
import time

try:  # page faults per call (POSIX); None elsewhere
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from bench.workloads import Size, Workload, primary

MiB = 2**20


def _memory_records(prof: profile) -> list[tuple[int, int]] | None:
    """Raw ``(time_ns, ±bytes)`` CPU allocation records of a finished profile, or None if unavailable."""
    try:
        events = prof.profiler.kineto_results.events()
    except AttributeError:
        return None
    return [
        (e.start_ns(), e.nbytes())
        for e in events
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]


def cpu_peak_bytes(fn: Callable[[], Any]) -> tuple[int, str]:
    """Peak CPU memory that ``fn()`` allocates above what is in use when it starts, in bytes.

    Runs ``fn`` under the profiler with ``profile_memory=True`` and walks the raw allocation
    (+bytes) and free (−bytes) records in time order, returning the maximum running sum (see
    ``scripts/benchmark.py``'s docstring for why not ``prof.events()``). Falls back to walking
    the operators' ``self_cpu_memory_usage`` in start-time order if the raw records are
    unavailable.

    Returns:
        ``(peak_bytes, method)`` with method ``"raw allocation records"`` or ``"operator events"``.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = _memory_records(prof)
    method = "raw allocation records"
    if records is None:
        method = "operator events"
        events = sorted(prof.events(), key=lambda e: e.time_range.start)
        records = [(e.time_range.start, e.self_cpu_memory_usage) for e in events]
    running = peak = 0
    for _, nbytes in sorted(records, key=lambda r: r[0]):
        running += nbytes
        peak = max(peak, running)
    return peak, method


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> tuple[int, str]:
    """Peak memory of ``fn()`` above the start, in bytes, and the method used (CUDA allocator or CPU profiler)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start, "torch.cuda.max_memory_allocated"
    return cpu_peak_bytes(fn)


def time_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one ``fn()`` in milliseconds (CUDA events on a GPU, perf_counter on a CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    start_s = time.perf_counter()
    fn()
    return (time.perf_counter() - start_s) * 1e3


def minor_faults() -> int | None:
    """Minor page faults of this process so far (memory the OS had to map in), or None where
    ``resource`` is missing. A call that faults much reuses little memory: glibc returned its
    freed blocks to the OS (see the allocator setting of ``scripts/benchmark.py``)."""
    return None if resource is None else resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def median_iqr(values: list[float]) -> tuple[float, float]:
    """Median and interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return values[0], 0.0
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q3 - q1


def fit_exponent(ns: Iterable[float], ts: Iterable[float]) -> tuple[float, float]:
    """Fit ``t = c · n^p`` by least squares on ``log t = log c + p log n``; returns ``(p, c)``.

    Raises:
        ValueError: fewer than two distinct sizes, or a non-positive size or time.
    """
    ns, ts = list(ns), list(ts)
    if len(ns) != len(ts) or len(set(ns)) < 2 or min(ns) <= 0 or min(ts) <= 0:
        raise ValueError(f"need >= 2 distinct positive sizes and positive times, got {ns} and {ts}")
    xs, ys = [math.log(n) for n in ns], [math.log(t) for t in ts]
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(ys)
    p = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sum((x - x_mean) ** 2 for x in xs)
    return p, math.exp(y_mean - p * x_mean)


@dataclass
class Bench:
    """Settings shared by every measurement of one run."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: float32 without autocast
    compile: bool
    repeats: int
    warmup: int
    sizes: tuple[Size, ...]
    max_seconds: float | None = None  # time cap of one phase of one measurement (see measure)
    only: set[str] | None = None  # layer names to run; None: all
    memory_method: str | None = None  # filled by the first CPU/CUDA peak measurement

    def selected(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.only is None or n in self.only]


@dataclass
class Measurement:
    """Timings (median and IQR over the repeats, ms) and peak memory (MiB) of one module."""

    forward_ms: float | None = None
    forward_iqr_ms: float | None = None
    train_ms: float | None = None  # forward+backward
    train_iqr_ms: float | None = None
    peak_mib: float | None = None  # of one forward+backward
    forward_repeats: int = 0  # timed runs actually made (fewer than asked under --max-seconds)
    train_repeats: int = 0
    forward_faults: float | None = None  # median minor page faults per timed call (CPU, POSIX)
    train_faults: float | None = None
    note: str | None = None  # why it was skipped, if it was


class _Runner:
    """Runs one workload: inference forward, or forward+backward, under the bench's autocast/compile."""

    def __init__(self, workload: Workload, bench: Bench) -> None:
        self.workload, self.bench = workload, bench
        workload.module.to(bench.device)
        self.fn = torch.compile(workload.module) if bench.compile else workload.module
        self.result = Measurement()

    def _autocast(self):
        dtype = self.bench.autocast_dtype
        return torch.autocast(self.bench.device.type, dtype=dtype, enabled=dtype is not None)

    def reset(self, train: bool) -> None:
        self.workload.module.train(train)
        if train:
            self.workload.module.zero_grad(set_to_none=True)
            for t in self.workload.inputs:
                t.grad = None

    def forward(self) -> None:
        with torch.no_grad(), self._autocast():
            self.workload.forward(self.fn)

    def train_step(self) -> None:
        with self._autocast():
            loss = primary(self.workload.forward(self.fn)).float().sum()
        loss.backward()


def _failure_note(bench: Bench, err: Exception) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{'compile failed' if bench.compile else 'failed'}: {type(err).__name__}: {message}"[:200]


def measure(workloads: list[Workload], bench: Bench, forward: bool = True) -> list[Measurement]:
    """Time (and measure the peak memory of) several workloads, interleaving their runs.

    For each phase (inference forward if ``forward``, then forward+backward): up to
    ``bench.warmup`` untimed rounds (at least two under ``--compile``: the first compiles),
    then up to ``bench.repeats`` timed rounds; a round runs every workload once, in turn, the
    first of them rotating from round to round (which one runs first changes its time). With
    ``bench.max_seconds``, warm-up stops once it has taken that long, and the first timed
    round sets the number of rounds to what fits in ``max_seconds`` (at least one); the
    repeats actually used are recorded. Finally one profiled forward+backward of each
    workload gives its peak memory. A workload that raises is skipped from then on with a
    note ("compile failed: ..." under ``--compile``).
    """
    runners = [_Runner(w, bench) for w in workloads]
    phases = (("forward", False), ("train", True)) if forward else (("train", True),)
    for phase, train in phases:
        times: dict[int, list[float]] = {i: [] for i in range(len(runners))}
        faults: dict[int, list[int]] = {i: [] for i in range(len(runners))}

        def run_round(
            timed: bool, k: int, train: bool = train, times: dict = times, faults: dict = faults
        ) -> float:
            """Run every workload still alive once, starting with workload ``k mod count``
            (so each goes first as often as the others); the seconds they took together."""
            total = 0.0
            start = k % len(runners)
            for i in [*range(start, len(runners)), *range(start)]:
                runner = runners[i]
                if runner.result.note is not None:
                    continue
                runner.reset(train)
                before = minor_faults()
                try:
                    elapsed = time_ms(runner.train_step if train else runner.forward, bench.device)
                except Exception as err:  # noqa: BLE001 - a layer that fails (to compile) is reported
                    runner.result.note = _failure_note(bench, err)
                    continue
                after = minor_faults()
                total += elapsed / 1e3
                if timed:
                    times[i].append(elapsed)
                    if before is not None and after is not None:
                        faults[i].append(after - before)
            return total

        spent, compile_rounds = 0.0, 2 if bench.compile else 0
        for k in range(max(bench.warmup, compile_rounds)):
            spent += run_round(timed=False, k=k)
            if bench.max_seconds is not None and spent >= bench.max_seconds and k + 1 >= compile_rounds:
                break
        planned, done = bench.repeats, 0
        while done < planned:
            round_s = run_round(timed=True, k=done)
            done += 1
            if done == 1 and bench.max_seconds is not None and round_s > 0:
                planned = min(bench.repeats, max(1, math.floor(bench.max_seconds / round_s)))
        for i, runner in enumerate(runners):
            if runner.result.note is None and times[i]:
                med, iqr = median_iqr(times[i])
                setattr(runner.result, f"{phase}_ms", med)
                setattr(runner.result, f"{phase}_iqr_ms", iqr)
                setattr(runner.result, f"{phase}_repeats", len(times[i]))
                if faults[i]:
                    setattr(runner.result, f"{phase}_faults", statistics.median(faults[i]))
    for runner in runners:
        if runner.result.note is None:
            runner.reset(True)
            peak, bench.memory_method = peak_memory_bytes(runner.train_step, bench.device)
            runner.result.peak_mib = peak / MiB
            runner.reset(True)  # drop the gradients
    return [runner.result for runner in runners]
