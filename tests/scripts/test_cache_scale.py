"""scripts/cache_scale.py: the feature-cache size of the Hub recipes, and the loader's rate."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import cache_scale


def test_the_vqav2_cache_is_a_14_by_14_by_2048_grid_per_coco_image():
    rows = {r["recipe"]: r for r in cache_scale.cache_sizes()}
    vqa = rows["recipes/hub/vqav2.yaml"]
    assert vqa["feature map"] == "2048×14×14" and vqa["images"] == 123_287
    assert vqa["MB / image float32"] == pytest.approx(2048 * 14 * 14 * 4 / 1e6)
    assert vqa["GB float16"] == pytest.approx(vqa["GB float32"] / 2)


def test_the_loader_rate_is_measured_on_synthetic_jpegs():
    assert cache_scale.loader_rate(workers=0, images=4, batch=2, size=64) > 0


def test_backbone_formats_times_every_variant_with_equal_channels_last_features(capsys):
    import backbone_formats

    times = backbone_formats.main(
        ["--backbone", "resnet10t", "--feature-index", "2", "--size", "32", "--batch", "2", "--repeats", "1"]
    )
    assert set(times) == set(backbone_formats.VARIANTS) and all(ms > 0 for ms in times.values())
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| ")
    }
    differences = {name: float(line.strip("| ").split(" | ")[-1]) for name, line in rows.items() if name in times}
    assert differences["contiguous, float32"] == 0 and differences["channels_last, float32"] < 1e-4
