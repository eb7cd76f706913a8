"""Shared fixtures: tiny VQA datasets built in the test, with the Hub schemas."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "blue": (30, 30, 220), "green": (30, 180, 30)}
SHAPES = ("circle", "rectangle")


def shape_png(color: str, shape: str, size: int = 32) -> bytes:
    """PNG bytes of one coloured shape on white."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    box = (size // 4, size // 4, 3 * size // 4, 3 * size // 4)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLORS[color])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def vqa_rows(n_images: int, seed: int, multi: bool) -> dict[str, list]:
    """Rows with columns img (PNG bytes dicts), q (question) and answers.

    ``multi=False``: ``answers`` is one string. ``multi=True``: VQAv2 style, a list of ten
    ``{"answer", "answer_confidence"}`` dicts, mostly the true answer plus noise.
    """
    rng = random.Random(seed)
    rows: dict[str, list] = {"img": [], "q": [], "answers": []}
    for _ in range(n_images):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        png = {"bytes": shape_png(color, shape), "path": None}
        for question, answer in (("what color is the shape?", color), ("what shape is it?", shape)):
            rows["img"].append(png)
            rows["q"].append(question)
            if multi:
                given = [answer] * 8 + [rng.choice(list(COLORS) + list(SHAPES)) for _ in range(2)]
                rows["answers"].append([{"answer": a, "answer_confidence": "yes"} for a in given])
            else:
                rows["answers"].append(answer)
    return rows


def make_dataset_dict(multi: bool = False, splits=("train", "validation", "test"), n_images: int = 12):
    import datasets

    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(vqa_rows(n_images, seed, multi)).cast_column(
                "img", datasets.Image()
            )
            for seed, name in enumerate(splits)
        }
    )


@pytest.fixture
def tiny_vqa():
    """Single-answer DatasetDict (columns img, q, answers) with train/validation/test."""
    return make_dataset_dict(multi=False)


@pytest.fixture
def tiny_vqav2():
    """VQAv2-style DatasetDict: ``answers`` is a list of ten {answer, answer_confidence} dicts."""
    return make_dataset_dict(multi=True)


@pytest.fixture
def tiny_vqa_on_disk(tmp_path):
    """The single-answer dataset written with ``save_to_disk``; returns its folder."""
    path = tmp_path / "tiny_vqa"
    make_dataset_dict(multi=False).save_to_disk(str(path))
    return path


def caption_rows(n_images: int, seed: int, layout: str = "list") -> dict[str, list]:
    """Rows with columns img (PNG bytes dicts) and the captions of each shape image.

    ``layout``: ``"list"`` (column ``captions``: two strings per image, Flickr style),
    ``"sentences"`` (column ``sentences``: ``[{"raw": ...}, ...]``, COCO-Karpathy style) or
    ``"string"`` (column ``caption``: one string).
    """
    rng = random.Random(seed)
    rows: dict[str, list] = {
        "img": [],
        {"list": "captions", "sentences": "sentences", "string": "caption"}[layout]: [],
    }
    column = list(rows)[1]
    for _ in range(n_images):
        color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
        rows["img"].append({"bytes": shape_png(color, shape), "path": None})
        captions = [f"a {color} {shape}", f"a {shape} that is {color}."]
        if layout == "list":
            rows[column].append(captions)
        elif layout == "sentences":
            rows[column].append([{"raw": c, "imgid": 0} for c in captions])
        else:
            rows[column].append(captions[0])
    return rows


def make_caption_dataset_dict(
    layout: str = "list", splits=("train", "validation", "test"), n_images: int = 12
):
    import datasets

    return datasets.DatasetDict(
        {
            name: datasets.Dataset.from_dict(caption_rows(n_images, seed, layout)).cast_column(
                "img", datasets.Image()
            )
            for seed, name in enumerate(splits)
        }
    )


@pytest.fixture
def tiny_captions_on_disk(tmp_path):
    """A captioning dataset (img, captions: two strings per image) written with ``save_to_disk``."""
    path = tmp_path / "tiny_captions"
    make_caption_dataset_dict().save_to_disk(str(path))
    return path


#: The tiny sentiment data: the polarity follows the word, the colour agrees with it.
SENTIMENT_WORDS = {"negative": "awful", "neutral": "plain", "positive": "lovely"}
SENTIMENT_COLORS = {"negative": "red", "neutral": "blue", "positive": "green"}


def sentiment_rows(n: int, seed: int) -> dict[str, list]:
    """Rows with columns img (PNG bytes dicts), sentence (str) and polarity (class name string)."""
    rng = random.Random(seed)
    rows: dict[str, list] = {"img": [], "sentence": [], "polarity": []}
    classes = list(SENTIMENT_WORDS)
    for i in range(n):
        label = classes[i % 3]
        shape = rng.choice(SHAPES)
        rows["img"].append({"bytes": shape_png(SENTIMENT_COLORS[label], shape), "path": None})
        rows["sentence"].append(f"a {SENTIMENT_WORDS[label]} {shape}")
        rows["polarity"].append(label)
    return rows


def make_sentiment_dataset_dict(labels: str = "strings", splits=("train", "validation", "test"), n: int = 24):
    """A sentiment ``DatasetDict`` (img, sentence, polarity) with ``labels`` "strings" or "classlabel"
    (a ``ClassLabel`` whose names are in another order than sorted: positive, negative, neutral)."""
    import datasets

    result = {}
    for seed, name in enumerate(splits):
        split = datasets.Dataset.from_dict(sentiment_rows(n, seed)).cast_column("img", datasets.Image())
        if labels == "classlabel":
            split = split.cast_column(
                "polarity", datasets.ClassLabel(names=["positive", "negative", "neutral"])
            )
        result[name] = split
    return datasets.DatasetDict(result)


@pytest.fixture
def tiny_sentiment_on_disk(tmp_path):
    """A sentiment dataset (img, sentence, polarity: ClassLabel) written with ``save_to_disk``."""
    path = tmp_path / "tiny_sentiment"
    make_sentiment_dataset_dict("classlabel").save_to_disk(str(path))
    return path
