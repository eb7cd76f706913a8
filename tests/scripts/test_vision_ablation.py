"""scripts/vision_ablation.py: variants over seeds, and the per-variant summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import vision_ablation

from tests.test_cli import TINY


def test_the_summary_gives_each_variant_its_seeds_and_mean_sd():
    results = [
        {"variant": "none", "seed": 0, "test_vqa_acc": 0.97},
        {"variant": "none", "seed": 1, "test_vqa_acc": 0.99},
        {"variant": "cbam", "seed": 0, "test_vqa_acc": 0.95},
    ]
    lines = vision_ablation.seed_summary(results).splitlines()
    assert lines[2] == "| none | 0, 1 | 0.9700, 0.9900 | 0.9800 ± 0.0141 |"
    assert lines[3] == "| cbam | 0 | 0.9500 | n/a |"


def test_the_paired_summary_gives_each_variants_difference_from_the_base_seed_by_seed(tmp_path, capsys):
    results = [
        {"variant": "none", "seed": 0, "test_vqa_acc": 0.97, "recipe": "r.yaml"},
        {"variant": "none", "seed": 1, "test_vqa_acc": 0.99, "recipe": "r.yaml"},
        {"variant": "cbam", "seed": 0, "test_vqa_acc": 0.98, "recipe": "r.yaml"},
        {"variant": "cbam", "seed": 1, "test_vqa_acc": 0.96, "recipe": "r.yaml"},
        {"variant": "stn", "seed": 2, "test_vqa_acc": 0.95, "recipe": "r.yaml"},  # no base seed 2
    ]
    lines = vision_ablation.paired_summary(results).splitlines()
    assert lines[2] == "| cbam | 0, 1 | +0.0100, -0.0300 | -0.0100 ± 0.0283 |"
    assert len(lines) == 3
    assert vision_ablation.paired_summary(results[2:]) == ""
    # --summarise: the same from --out files, without running anything
    (tmp_path / "a.json").write_text(json.dumps(results[:2]))
    (tmp_path / "b.json").write_text(json.dumps(results[2:4]))
    vision_ablation.main(["--summarise", str(tmp_path / "a.json"), str(tmp_path / "b.json")])
    assert "| cbam | 0, 1 | +0.0100, -0.0300 | -0.0100 ± 0.0283 |" in capsys.readouterr().out
    (tmp_path / "c.json").write_text(json.dumps([{**results[0], "recipe": "other.yaml"}]))
    with pytest.raises(SystemExit):
        vision_ablation.main(["--summarise", str(tmp_path / "a.json"), str(tmp_path / "c.json")])
    assert "several recipes ['other.yaml', 'r.yaml']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        vision_ablation.main(["--summarise", str(tmp_path / "none.json")])
    assert "no such file" in capsys.readouterr().err


def test_summarise_pairs_the_variants_with_the_base_it_is_given(tmp_path, capsys):
    results = [
        {"variant": "top-finetuned", "seed": 0, "test_vqa_acc": 0.99, "recipe": "r.yaml"},
        {"variant": "top-finetuned", "seed": 1, "test_vqa_acc": 0.98, "recipe": "r.yaml"},
        {"variant": "top-finetuned+stn-output", "seed": 0, "test_vqa_acc": 0.995, "recipe": "r.yaml"},
        {"variant": "top-finetuned+stn-output", "seed": 1, "test_vqa_acc": 0.99, "recipe": "r.yaml"},
    ]
    (tmp_path / "a.json").write_text(json.dumps(results))
    vision_ablation.main(["--summarise", str(tmp_path / "a.json"), "--base", "top-finetuned"])
    out = capsys.readouterr().out
    assert "| variant | seeds | minus top-finetuned, per seed | mean ± sd |" in out
    assert "| top-finetuned+stn-output | 0, 1 | +0.0050, +0.0100 | +0.0075 ± 0.0035 |" in out
    vision_ablation.main(["--summarise", str(tmp_path / "a.json")])  # no "none" run: no pairs
    assert "minus" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        vision_ablation.main(["--summarise", str(tmp_path / "a.json"), "--base", "none"])
    assert "no run of the base variant 'none'" in capsys.readouterr().err


def test_variants_run_with_each_seed(tiny_vqa_on_disk, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    brief = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]
    data = ["--data.init_args.dataset", str(tiny_vqa_on_disk), *TINY]
    results = vision_ablation.main(
        ["--epochs", "1", "--variants", "finetuned+stn", "--seeds", "0", "1", *brief, *data]
    )
    assert [(r["variant"], r["seed"]) for r in results] == [("finetuned+stn", 0), ("finetuned+stn", 1)]
    assert all(0 <= r["test_vqa_acc"] <= 1 for r in results)
    assert "| finetuned+stn | 0, 1 |" in capsys.readouterr().out


def test_every_variant_names_valid_encoder_and_optimisation_arguments():
    from vlkit.tasks import Optimization
    from vlkit.vision.factory import ImageEncoderConfig

    for variant, (encoder_args, task_args) in vision_ablation.VARIANTS.items():
        encoder = ImageEncoderConfig.parse(
            {"backbone": "resnet10t", "dim": 8, "freeze": True, **encoder_args}
        ).build()
        assert encoder.cacheable == (
            variant
            in (
                "none",
                "cbam-output",
                "cbam-bounded-output",
                "cbam-plain-output",
                "cbam-bn-output",
                "cbam-plain-bn-output",
                "cbam-regions",
                "cbam-bn-regions",
                "cbam-bounded-regions",
                "stn-output",
                "cbam+stn-output",
                "top-finetuned",
                "top-finetuned+cbam-output",
                "top-finetuned+cbam-regions",
                "top-finetuned+stn-output",
                "top-finetuned+cbam+stn-output",
            )
        ), variant
        Optimization(**{key.removeprefix("optimization."): value for key, value in task_args.items()})


def test_a_variant_without_a_cbam_gate_passes_null_to_the_recipe(monkeypatch):
    seen = {}

    def fake_run_recipe(recipe, name, runs_dir, epochs, overrides):
        seen.update(zip(overrides[::2], overrides[1::2]))
        return {"test_vqa_acc": 0.5}

    monkeypatch.setattr(vision_ablation, "run_recipe", fake_run_recipe)
    vision_ablation.run("cbam-plain-bn-output", 1, [], seed=3)
    assert seen["--model.init_args.image_encoder.cbam_gate"] == "null"
    assert seen["--model.init_args.image_encoder.cbam_spatial_norm"] == "true"
    assert seen["--seed_everything"] == "3"
