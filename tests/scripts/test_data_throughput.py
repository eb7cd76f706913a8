"""Tests for scripts/data_throughput.py: data and training-step rates of a recipe on tiny data."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
spec = importlib.util.spec_from_file_location("data_throughput", SCRIPTS / "data_throughput.py")
throughput = importlib.util.module_from_spec(spec)
spec.loader.exec_module(throughput)


def test_rates_of_a_recipe_with_and_without_cached_features(tiny_vqa_on_disk, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "rates.json"
    results = throughput.main(
        [
            "--batches", "2", "--num_workers", "0", "--cache", "--out", str(out),
            "--data.init_args.dataset", str(tiny_vqa_on_disk),
            "--data.init_args.image_column", "img",
            "--data.init_args.question_column", "q",
            "--data.init_args.answer_column", "answers",
            "--data.init_args.image_size", "32",
            "--data.init_args.batch_size", "4",
        ]
    )  # fmt: skip
    assert json.loads(out.read_text()) == results
    assert set(results["data"]) == {"images, 0 workers", "cached features, 0 workers"}
    assert all(rate > 0 for rate in results["data"].values())
    assert results["step"] > 0 and results["step (cached features)"] > 0 and results["cache_build_s"] >= 0
    printed = capsys.readouterr().out
    assert "| training step (forward + backward + AdamW) |" in printed


def test_loader_rate_counts_images_per_second(monkeypatch):
    class Batch:
        def __init__(self, n: int) -> None:
            self.label = [0] * n

    clock = iter(x for k in range(100) for x in (k, k + 0.01))  # every batch takes 10 ms
    monkeypatch.setattr(throughput, "_clock", lambda: next(clock))
    loader = [Batch(8), Batch(4)] * 5
    rate = throughput.loader_rate(loader, batches=4, warmup=1)
    assert rate == pytest.approx(statistics.median([400.0, 800.0, 400.0, 800.0]))  # 4 or 8 images / 10 ms


spec_cache = importlib.util.spec_from_file_location("cache_comparison", SCRIPTS / "cache_comparison.py")
comparison = importlib.util.module_from_spec(spec_cache)
spec_cache.loader.exec_module(comparison)


def test_cache_comparison_trains_the_same_with_and_without_the_cache(tiny_vqa_on_disk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VLKIT_CACHE", str(tmp_path / "cache"))
    # one thread per run: multi-threaded CPU kernels may sum in any order, and on 24 questions the
    # first AdamW steps turn such last-bit differences into different models
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "cache.json"
    results = comparison.main(
        [
            "--epochs", "1", "--out", str(out), "--log-root", str(tmp_path / "runs"),
            "--data.init_args.dataset", str(tiny_vqa_on_disk),
            "--data.init_args.image_column", "img",
            "--data.init_args.question_column", "q",
            "--data.init_args.answer_column", "answers",
            "--data.init_args.image_size", "32",
            "--data.init_args.batch_size", "8",
            "--data.init_args.num_workers", "0",
        ]
    )  # fmt: skip
    images, cached = results
    assert (images["name"], cached["name"]) == ("images", "cached")
    assert images["test_vqa_acc"] == cached["test_vqa_acc"] and images["test_loss"] == pytest.approx(
        cached["test_loss"], abs=1e-5
    )
    assert json.loads(out.read_text())[1]["value"] == cached["test_vqa_acc"]
    assert list((tmp_path / "cache" / "features").glob("*.npy"))  # the cache was written
