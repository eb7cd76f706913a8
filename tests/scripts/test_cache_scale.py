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
