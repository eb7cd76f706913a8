"""``vlkit predict`` over many inputs: folders, globs and CSV / JSONL tables, batches, --device, --output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import shape_png
from tests.test_cli import TINY, TINY_CAPTIONS, short_fit
from vlkit.cli import main, predict_main
from vlkit.cli.batch import parse_device, prediction_record, read_inputs, write_predictions
from vlkit.tasks import VQAPrediction

SHAPES = [
    ("red", "circle"),
    ("blue", "rectangle"),
    ("green", "circle"),
    ("red", "rectangle"),
    ("blue", "circle"),
]


def write_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (color, shape) in enumerate(SHAPES):
        path = folder / f"{i}_{color}_{shape}.png"
        path.write_bytes(shape_png(color, shape))
        paths.append(path)
    (folder / "notes.txt").write_text("not an image")  # left out of a folder's inputs
    return paths


# -- reading inputs ---------------------------------------------------------------------------------
def test_a_folder_gives_its_images_sorted_with_the_one_question(tmp_path):
    paths = write_images(tmp_path / "imgs")
    rows = read_inputs(str(tmp_path / "imgs"), "question", "what color?")
    assert rows == [{"image": str(p), "question": "what color?"} for p in paths]
    assert read_inputs(str(tmp_path / "imgs"), None, None) == [{"image": str(p)} for p in paths]
    with pytest.raises(
        ValueError, match=r"image .*0_red_circle.png: no question; give a question column or --question"
    ):
        read_inputs(str(tmp_path / "imgs"), "question", None)


def test_a_glob_gives_the_matching_images(tmp_path):
    paths = write_images(tmp_path / "imgs")
    rows = read_inputs(str(tmp_path / "imgs" / "*red*"), "text", "nice")
    assert [r["image"] for r in rows] == [str(p) for p in paths if "red" in p.name]
    with pytest.raises(FileNotFoundError, match="matches no image file"):
        read_inputs(str(tmp_path / "imgs" / "*.jpg"), None, None)


def test_a_table_gives_rows_with_paths_relative_to_it_and_its_own_questions(tmp_path):
    paths = write_images(tmp_path / "imgs")
    table = tmp_path / "in.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "question"])
        writer.writerow(["imgs/" + paths[0].name, "what shape?"])
        writer.writerow([str(paths[1]), ""])  # absolute, and no question: takes --question
    rows = read_inputs(str(table), "question", "what color?")
    assert rows == [
        {"image": str(tmp_path / "imgs" / paths[0].name), "question": "what shape?"},
        {"image": str(paths[1]), "question": "what color?"},
    ]
    lines = tmp_path / "in.jsonl"
    lines.write_text(json.dumps({"image": "imgs/" + paths[2].name, "text": "lovely"}) + "\n\n")
    assert read_inputs(str(lines), "text", None) == [
        {"image": str(tmp_path / "imgs" / paths[2].name), "text": "lovely"}
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"image": "a.png"}\n{"image": \n', r"line 2: not a JSON object"),
        ('["a.png"]\n', r"line 1: expected a JSON object"),
        ('{"picture": "a.png"}\n', r"row 1: no image path in an 'image' column \(columns: \['picture'\]\)"),
        ('{"image": "a.png", "question": 3}\n', r"row 1: the question must be a string, got int 3"),
        ("", r"has no rows"),
    ],
)
def test_a_bad_table_names_its_line_or_row(tmp_path, content, message):
    table = tmp_path / "in.jsonl"
    table.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_inputs(str(table), "question", None)


def test_missing_images_are_all_named_before_anything_runs(tmp_path):
    table = tmp_path / "in.csv"
    table.write_text("image,question\nnone1.png,what?\nnone2.png,what?\n")
    with pytest.raises(FileNotFoundError, match=r"2 image\(s\) do not exist: '.*none1.png', '.*none2.png'"):
        read_inputs(str(table), "question", None)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="must be a .csv or .jsonl table; for one image use --image"):
        read_inputs(str(tmp_path / "notes.txt"), None, None)


# -- devices and outputs ----------------------------------------------------------------------------
def test_device_names_are_checked():
    assert parse_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="is not a device name"):
        parse_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(
            ValueError, match=r"--device cuda:1: this machine has 0 CUDA device\(s\); use --device cpu"
        ):
            parse_device("cuda:1")


def test_predictions_are_written_as_jsonl_or_csv(tmp_path):
    prediction = VQAPrediction(
        "red", 0.9, [("red", 0.9), ("blue", 0.05)], ["what", "colour"], ["colour"], torch.ones(4)
    )
    record = prediction_record({"image": "a.png", "question": "what colour"}, prediction)
    assert record == {
        "image": "a.png",
        "question": "what colour",
        "answer": "red",
        "score": 0.9,
        "answers": [["red", 0.9], ["blue", 0.05]],
        "tokens": ["what", "colour"],
        "unknown_words": ["colour"],
    }  # attention tensors are left out
    lines = write_predictions(tmp_path / "out" / "p.jsonl", [record, record]).read_text().splitlines()
    assert [json.loads(line) for line in lines] == [record, record]
    with open(write_predictions(tmp_path / "p.csv", [record]), newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["answer"] == "red" and json.loads(row["answers"]) == [["red", 0.9], ["blue", 0.05]]
    with pytest.raises(ValueError, match="a .jsonl or .csv file"):
        write_predictions(tmp_path / "p.txt", [record])


# -- end to end ---------------------------------------------------------------------------------------
def test_predict_many_vqa_inputs_in_batches_equals_one_at_a_time(
    tiny_vqa_on_disk, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    cli = short_fit("vqa/easy_vqa_parallel", tiny_vqa_on_disk, TINY, "--trainer.limit_val_batches", "1")
    best = cli.trainer.checkpoint_callback.best_model_path
    paths = write_images(tmp_path / "imgs")
    single = [
        predict_main(["--ckpt_path", best, "--image", str(p), "--question", "what color is the shape?"])
        for p in paths
    ]
    capsys.readouterr()
    output = tmp_path / "preds.jsonl"
    many = predict_main(
        ["--ckpt_path", best, "--inputs", str(tmp_path / "imgs"), "--question", "what color is the shape?"]
        + ["--batch_size", "2", "--device", "cpu", "--output", str(output)]
    )
    assert [p.answer for p in many] == [p.answer for p in single]
    assert [p.score for p in many] == pytest.approx([p.score for p in single], abs=1e-5)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in paths]
    assert [r["answer"] for r in records] == [p.answer for p in single]
    printed = capsys.readouterr().out
    assert all(p.name in printed for p in paths)

    # a question with words the model never saw: a warning names them
    table = tmp_path / "in.csv"
    table.write_text(
        f"image,question\n{paths[0]},what colour is this blob?\n{paths[1]},what color is the shape?\n"
    )
    predict_main(["--ckpt_path", best, "--inputs", str(table)])
    err = capsys.readouterr().err
    assert "1 of 2 questions have words that are not in the model's vocabulary" in err
    assert "blob" in err and "colour" in err

    # mistakes: one line each, before the model runs
    for args, message in [
        (["--image", str(paths[0]), "--inputs", str(tmp_path / "imgs")], "not both"),
        (
            ["--inputs", str(tmp_path / "imgs"), "--save_attention", "a.png"],
            "--save_attention draws one image",
        ),
        (["--inputs", str(tmp_path / "imgs"), "--output", "p.txt"], "a .jsonl or .csv file"),
        (["--inputs", str(tmp_path / "imgs"), "--batch_size", "0"], "--batch_size must be >= 1"),
        (["--inputs", str(tmp_path / "imgs"), "--device", "cuda:7"], "--device cuda:7"),
    ]:
        with pytest.raises(SystemExit):
            main(["predict", "--ckpt_path", best, "--question", "what?", *args])
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, err


def test_predict_many_captions_to_csv(tiny_captions_on_disk, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = short_fit(
        "captioning/emoji_sat", tiny_captions_on_disk, TINY_CAPTIONS, "--trainer.limit_val_batches", "1"
    )
    best = cli.trainer.checkpoint_callback.best_model_path
    paths = write_images(tmp_path / "imgs")
    output = tmp_path / "captions.csv"
    captions = predict_main(
        [
            "--ckpt_path",
            best,
            "--inputs",
            str(tmp_path / "imgs" / "*.png"),
            "--output",
            str(output),
            "--batch_size",
            "3",
        ]
    )
    single = [predict_main(["--ckpt_path", best, "--image", str(p)]) for p in paths]
    assert [c.caption for c in captions] == [c.caption for c in single]
    with open(output, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["caption"] for r in rows] == [c.caption for c in single]
    assert [float(r["log_prob"]) for r in rows] == pytest.approx([c.log_prob for c in single], abs=1e-5)
