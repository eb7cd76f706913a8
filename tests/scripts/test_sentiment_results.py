"""Tests for scripts/sentiment_results.py: the variants, the seed summary, a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
import yaml

SCRIPTS = Path(__file__).parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
spec = importlib.util.spec_from_file_location("sentiment_results", SCRIPTS / "sentiment_results.py")
results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(results)
ROOT = Path(__file__).parents[2]


def test_variants_share_the_recipe_but_the_text_encoder():
    crossmodal = yaml.safe_load((ROOT / results.CROSSMODAL).read_text())
    minilm = yaml.safe_load((ROOT / results.VARIANTS["crossmodal_minilm"][0]).read_text())
    a, b = crossmodal["model"]["init_args"], minilm["model"]["init_args"]
    assert a["text_encoder"]["name"] == "lstm" and b["text_encoder"]["name"] == "hf"
    assert {k: v for k, v in a.items() if k not in ("text_encoder", "optimization")} == {
        k: v for k, v in b.items() if k not in ("text_encoder", "optimization")
    }
    assert {k: v for k, v in a["optimization"].items()} == {
        k: v for k, v in b["optimization"].items() if k != "text_lr_ratio"
    }
    assert crossmodal["trainer"]["max_epochs"] == minilm["trainer"]["max_epochs"]
    assert {k: v for k, v in crossmodal["data"]["init_args"].items()} == {
        k: v for k, v in minilm["data"]["init_args"].items() if k != "tokenizer_name"
    }
    assert results.VARIANTS["image_only"][1][-1] == "image" and results.VARIANTS["text_only"][1][-1] == "text"
    assert results.VARIANTS["text_only_minilm"] == (results.MINILM, ["--model.init_args.modality", "text"])


def test_summary_is_mean_sample_sd_and_range_by_hand():
    runs = [
        {"variant": "text_only", "seed": s, "test_acc": acc, "test_macro_f1": f1, "seconds": sec}
        for s, acc, f1, sec in ((0, 0.5, 0.4, 10.0), (1, 0.6, 0.5, 12.0), (2, 0.7, 0.3, 14.0))
    ] + [{"variant": "image_only", "seed": 0, "test_acc": 0.25, "test_macro_f1": 0.2, "seconds": 3.0}]
    rows = results.summarize(runs)
    assert [r["variant"] for r in rows] == ["image_only", "text_only"]  # VARIANTS order
    text = rows[1]
    assert text["acc"] == f"0.600 ± {statistics.stdev([0.5, 0.6, 0.7]):.3f}" == "0.600 ± 0.100"
    assert text["acc_range"] == "0.500–0.700" and text["f1_range"] == "0.300–0.500"
    assert text["macro_f1"] == "0.400 ± 0.100" and text["seeds"] == "0 1 2" and text["seconds"] == 12.0
    assert rows[0]["acc"] == "0.250 ± 0.000"  # one seed: no spread


def test_one_variant_one_seed_on_tiny_data_then_merge(tiny_sentiment_on_disk, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs.json"
    tiny = [
        "--data.init_args.dataset", str(tiny_sentiment_on_disk),
        "--data.init_args.image_column", "img",
        "--data.init_args.text_column", "sentence",
        "--data.init_args.label_column", "polarity",
        "--data.init_args.image_size", "32",
        "--data.init_args.num_workers", "0",
        "--trainer.limit_train_batches", "1",
        "--trainer.max_epochs", "1",
    ]  # fmt: skip
    rows = results.main(
        [
            "--variants",
            "text_only",
            "--seeds",
            "3",
            "--out",
            str(out),
            "--log-root",
            str(tmp_path / "runs"),
            *tiny,
        ]
    )
    (run,) = json.loads(out.read_text())
    assert run["variant"] == "text_only" and run["seed"] == 3
    assert 0 <= run["test_acc"] <= 1 and 0 <= run["test_macro_f1"] <= 1
    assert (tmp_path / "runs" / "text_only_seed3").is_dir()
    assert rows[0]["acc"] == f"{run['test_acc']:.3f} ± 0.000"
    assert "| text_only |" in capsys.readouterr().out
    markdown = tmp_path / "table.md"
    merged = results.main(["--merge", str(out), str(out), "--markdown", str(markdown)])
    assert merged[0]["seeds"] == "3 3" and markdown.read_text().startswith("| variant |")


@pytest.mark.parametrize("variant", list(results.VARIANTS))
def test_every_variant_names_an_existing_recipe(variant):
    assert (ROOT / results.VARIANTS[variant][0]).is_file()
