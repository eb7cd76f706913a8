"""VQADataModule: column mapping, vocabularies, soft scores, bad input."""

from __future__ import annotations

import datasets
import pytest
import torch

from vlkit.data import BadSampleError, VQADataModule, answer_list, soft_scores

COLUMNS = {"image_column": "img", "question_column": "q", "answer_column": "answers"}


def make_dm(data, **kwargs) -> VQADataModule:
    return VQADataModule(dataset=data, **{**COLUMNS, "batch_size": 4, "image_size": 32, **kwargs})


# -- answer parsing -------------------------------------------------------------------------
def test_answer_list_accepts_every_hub_layout():
    assert answer_list("Red ") == ["red"]
    assert answer_list(["yes", "No"]) == ["yes", "no"]
    assert answer_list([{"answer": "two", "answer_id": 1}, {"answer": "2."}]) == ["2", "2"]  # normalised
    assert answer_list({"answer": ["x", "y"], "answer_confidence": ["yes", "no"]}) == ["x", "y"]


@pytest.mark.parametrize("bad", [None, 3, [1, 2], "", ["  "]])
def test_answer_list_rejects_unreadable_cells(bad):
    with pytest.raises(ValueError):
        answer_list(bad)


def test_soft_scores_follow_the_vqa_formula():
    index = {"red": 0, "blue": 1, "green": 2}
    answers = ["red"] * 4 + ["blue"] * 2 + ["green"] + ["pink"] * 3
    assert soft_scores(answers, index) == {0: 1.0, 1: pytest.approx(2 / 3), 2: pytest.approx(1 / 3)}
    assert soft_scores(["blue"], index) == {1: 1.0}
    assert soft_scores(["pink"], index) == {}


# -- column mapping -------------------------------------------------------------------------
def test_single_answer_mapping_and_batches(tiny_vqa):
    dm = make_dm(tiny_vqa)
    assert dm.vocabulary[:2] == ["<pad>", "<unk>"]
    assert set(dm.answers) <= {"red", "blue", "green", "circle", "rectangle"}
    assert dm.multi_answer is False
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (4, 3, 32, 32) and batch.image.dtype == torch.float32
    assert batch.question_ids.shape[0] == 4 and batch.question_mask.dtype == torch.bool
    assert torch.equal(batch.question_mask, batch.question_ids != 0)
    # single answer: scores are the one-hot of the label
    assert torch.equal(batch.scores.argmax(1), batch.label)
    assert torch.equal(batch.scores.sum(1), torch.ones(4))


def test_vqav2_answers_give_soft_scores(tiny_vqav2):
    dm = make_dm(tiny_vqav2)
    assert dm.multi_answer is True
    dm.setup("fit")
    split = dm._splits["train"]
    rows = tiny_vqav2["train"]["answers"]
    index = {a: i for i, a in enumerate(dm.answers)}
    for i, row in enumerate(split.rows):
        given = [a["answer"] for a in rows[row]]
        expected = {index[a]: min(given.count(a) / 3, 1.0) for a in set(given) if a in index}
        assert split.scores[i] == pytest.approx(expected)
        assert dm.answers[split.label[i]] == max(set(given), key=given.count)
    batch = next(iter(dm.val_dataloader()))
    assert batch.multi_answer and batch.scores.max() == 1.0


def test_top_k_answers_and_out_of_vocabulary(tiny_vqa):
    dm = make_dm(tiny_vqa, num_answers=2)
    assert len(dm.answers) == 2
    dm.setup()
    train_answers = tiny_vqa["train"]["answers"]
    kept = [train_answers[r] for r in dm._splits["train"].rows]
    assert set(kept) <= set(dm.answers)  # training rows without an in-vocabulary answer are left out
    assert dm.out_of_vocab["train"] == sum(a not in dm.answers for a in train_answers)
    # validation keeps every row; out-of-vocabulary ones get label -100 and no score
    val = dm._splits["validation"]
    assert len(val.rows) == len(tiny_vqa["validation"])
    oov = [i for i, r in enumerate(val.rows) if tiny_vqa["validation"]["answers"][r] not in dm.answers]
    assert oov and all(val.label[i] == -100 and val.scores[i] == {} for i in oov)


def test_vocabulary_comes_from_training_split_only(tiny_vqa):
    data = datasets.DatasetDict({k: v for k, v in tiny_vqa.items()})
    data["test"] = data["test"].map(lambda row: {"q": "zebra " + row["q"]})
    dm = make_dm(data)
    assert "zebra" not in dm.vocabulary
    dm.setup()
    assert dm._splits["test"].question_ids[0][0] == 1  # <unk>


def test_missing_validation_split_is_held_out_from_train(tiny_vqa):
    data = datasets.DatasetDict({"train": tiny_vqa["train"], "test": tiny_vqa["test"]})
    dm = make_dm(data, val_fraction=0.25)
    dm.setup()
    n = len(tiny_vqa["train"])
    assert len(dm._hf["validation"]) >= n // 4
    assert len(dm._hf["train"]) + len(dm._hf["validation"]) == n


def _numbered_png(i: int) -> bytes:
    """A distinct image per ``i`` (its bits as black and white pixels)."""
    import io

    from PIL import Image

    image = Image.new("L", (8, 8), 255)
    image.putdata([0 if (i >> k) & 1 else 255 for k in range(64)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_held_out_validation_split_shares_no_image_with_training(seed, caplog):
    # 40 images, three questions each: held out row by row, most validation images would be training ones
    questions = ("what color is it?", "what shape is it?", "is it big?")
    rows = {"img": [], "q": [], "answers": []}
    for i in range(40):
        for question in questions:
            rows["img"].append({"bytes": _numbered_png(i), "path": None})
            rows["q"].append(question)
            rows["answers"].append(["yes", "no"][i % 2])
    train = datasets.Dataset.from_dict(rows).cast_column("img", datasets.Image())
    dm = make_dm(datasets.DatasetDict({"train": train}), val_fraction=0.2, seed=seed)
    with caplog.at_level("INFO", logger="vlkit.data.splits"):
        dm.setup()

    def images(split):
        return {
            cell["bytes"] for cell in dm._hf[split].cast_column("img", datasets.Image(decode=False))["img"]
        }

    assert not images("train") & images("validation")
    assert len(images("train")) + len(images("validation")) == 40
    assert len(dm._hf["validation"]) == 3 * len(images("validation")) == 24  # 8 of 40 images: 24 of 120 rows
    assert (
        "holding out 24 of 120 training rows for validation, 8 of 40 images with all their rows"
        in caplog.text
    )


def test_loads_a_save_to_disk_folder(tiny_vqa_on_disk):
    dm = make_dm(str(tiny_vqa_on_disk))
    assert len(next(iter(dm.test_dataloader())).label) == 4


def _left_right_png(left: str, right: str) -> bytes:
    import io

    from PIL import Image

    image = Image.new("RGB", (32, 32), left)
    image.paste(Image.new("RGB", (16, 32), right), (16, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_training_images_are_not_mirrored_by_default_so_position_answers_stay_true():
    # "what color is on the left?": a mirror image would make the answer the other colour
    pairs = [("red", "blue"), ("blue", "green"), ("green", "red")] * 4
    rows = {
        "img": [{"bytes": _left_right_png(a, b), "path": None} for a, b in pairs],
        "q": ["what color is on the left?"] * len(pairs),
        "answers": [a for a, _ in pairs],
    }
    split = datasets.Dataset.from_dict(rows).cast_column("img", datasets.Image())
    dm = make_dm(datasets.DatasetDict({"train": split, "validation": split}), batch_size=12)
    assert dm.hparams.augment is False
    left = {"red": 0, "blue": 2, "green": 1}  # the colour's strongest channel
    for epoch in range(4):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            left_pixels = batch.image[:, :, 16, 2]  # (b, 3): a pixel in the left half
            for answer, pixel in zip(batch.label.tolist(), left_pixels):
                assert int(pixel.argmax()) == left[dm.answers[answer]]


# -- bad input ------------------------------------------------------------------------------
def test_missing_column_names_the_column_and_the_alternatives(tiny_vqa):
    dm = make_dm(tiny_vqa, question_column="question")
    with pytest.raises(ValueError, match=r"no column 'question'.*\['img', 'q', 'answers'\]"):
        dm.setup()


def test_missing_train_split_is_an_error(tiny_vqa):
    with pytest.raises(ValueError, match="no training split 'training'"):
        make_dm(tiny_vqa, train_split="training").setup()


def _with_row(data, split, row, **values):
    def edit(example, idx):
        return {**example, **values} if idx == row else example

    out = datasets.DatasetDict(dict(data))
    out[split] = out[split].map(edit, with_indices=True)
    return out


@pytest.mark.parametrize("question", ["", "   ", "\t\n"])
def test_empty_question_is_an_error_naming_split_row_and_column(tiny_vqa, question):
    data = _with_row(tiny_vqa, "validation", 3, q=question)
    with pytest.raises(BadSampleError, match=r"split 'validation', column 'q'.*rows \[3\]"):
        make_dm(data).setup()


def test_empty_question_is_skipped_and_counted_when_asked(tiny_vqa):
    data = _with_row(tiny_vqa, "train", 5, q=" ")
    dm = make_dm(data, on_bad_sample="skip")
    dm.setup()
    assert dm.skipped_rows["train"] == [5]
    assert 5 not in dm._splits["train"].rows
    assert len(dm._splits["train"].rows) == len(tiny_vqa["train"]) - 1


def _with_broken_image(data, split, row):
    rows = data[split].to_dict()
    rows["img"] = [dict(x) for x in data[split].cast_column("img", datasets.Image(decode=False))["img"]]
    rows["img"][row] = {"bytes": b"this is not a png", "path": None}
    out = datasets.DatasetDict(dict(data))
    out[split] = datasets.Dataset.from_dict(rows).cast_column("img", datasets.Image())
    return out


def test_unreadable_image_is_an_error_naming_split_row_and_column(tiny_vqa):
    dm = make_dm(_with_broken_image(tiny_vqa, "test", 2))
    with pytest.raises(BadSampleError, match=r"split 'test', row 2, column 'img': cannot read the image"):
        for _ in dm.test_dataloader():
            pass


def test_unreadable_image_is_skipped_and_counted_when_asked(tiny_vqa):
    dm = make_dm(_with_broken_image(tiny_vqa, "test", 2), on_bad_sample="skip")
    batch = next(iter(dm.test_dataloader()))  # rows 0-3
    assert batch.num_skipped == 1
    assert batch.image.shape[0] == batch.label.shape[0] == 3


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="on_bad_sample"):
        VQADataModule(on_bad_sample="ignore")
    with pytest.raises(ValueError, match="val_fraction"):
        VQADataModule(val_fraction=1.5)


# -- the packaged source --------------------------------------------------------------------
def test_easy_vqa_source_is_a_dataset_dict_with_image_feature():
    from vlkit.data import build_easy_vqa

    data = build_easy_vqa()
    assert set(data) == {"train", "validation", "test"}
    assert isinstance(data["train"].features["image"], datasets.Image)
    assert len(data["train"]) + len(data["validation"]) == 38575 and len(data["test"]) == 9673
    assert not set(data["train"]["image_id"]) & set(data["validation"]["image_id"])
    image = data["test"][0]["image"]
    assert image.size == (64, 64)
