"""The parts of ``scripts/benchmark.py``: what runs (:mod:`bench.workloads`), how it is measured
(:mod:`bench.measurement`), the sections that run and report it (:mod:`bench.sections`) and
the tables and device lines (:mod:`bench.report`)."""
