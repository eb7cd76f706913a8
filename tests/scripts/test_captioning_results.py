"""scripts/captioning_results.py: captioning scores per run and per recipe over seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import captioning_results


def finished_run(folder: Path, seed: int, bleu4: float, captions: list[tuple[str, list[str]]]) -> Path:
    folder.mkdir(parents=True)
    scores = {"bleu1": 0.5, "bleu4": bleu4, "rouge_l": 0.4, "cider_d": 1.5}
    written = {"scores": scores, "captions": [{"caption": c, "references": r} for c, r in captions]}
    (folder / "test_captions.json").write_text(json.dumps(written))
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"seed_everything": seed, "run_name": f"emoji_sat_seed{seed}"})
    )
    return folder


def test_runs_are_read_and_summarised_over_seeds(tmp_path):
    runs = [
        finished_run(tmp_path / "a", 1, 0.3, [("a cat", ["a cat"]), ("a dog", ["a cow"])]),
        finished_run(tmp_path / "b", 2, 0.5, [("a cat", ["a cow", "a cat"]), ("a dog", ["a dog"])]),
    ]
    rows = [captioning_results.from_run_folder(str(run)) for run in runs]
    assert [(r["recipe"], r["seed"], r["bleu4"], r["exact"]) for r in rows] == [
        ("emoji_sat", 1, 0.3, "1 / 2"),
        ("emoji_sat", 2, 0.5, "2 / 2"),
    ]
    (summary,) = captioning_results.summarize(rows)
    assert (
        summary["seed"] == "1 2" and summary["bleu4"] == "0.400 ± 0.141" and summary["exact"] == "1.5 ± 0.7"
    )


def test_an_untested_run_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="was the run tested"):
        captioning_results.read_run(tmp_path, "emoji_sat", 0)
