"""Emoji sentiment source: labels from the Emoji Sentiment Ranking, stratified deterministic split."""

from __future__ import annotations

from collections import Counter

import pytest
from emosent import EMOJI_SENTIMENT_DICT

from vlkit.data import SENTIMENT_CLASSES, SentimentDataModule, build_emoji_sentiment, load_dataset_dict
from vlkit.data.emoji_sentiment import sentiment_label, stratified_split

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def sentiment():
    return build_emoji_sentiment()  # cached under $VLKIT_CACHE after the first run


def test_label_is_the_class_with_most_tweets_and_ties_are_neutral():
    assert sentiment_label(1, 2, 3) == 2 and sentiment_label(5, 2, 3) == 0 and sentiment_label(0, 4, 1) == 1
    assert sentiment_label(3, 1, 3) == 1 and sentiment_label(2, 2, 0) == 1 and sentiment_label(0, 0, 0) == 1
    with pytest.raises(ValueError, match=">= 0"):
        sentiment_label(-1, 0, 0)


def test_stratified_split_keeps_class_proportions_and_is_deterministic():
    labels = [0] * 20 + [1] * 50 + [2] * 30
    splits = stratified_split(labels, 0.1, 0.2, seed=3)
    assert splits == stratified_split(labels, 0.1, 0.2, seed=3)
    assert splits != stratified_split(labels, 0.1, 0.2, seed=4)
    assert sorted(splits["train"] + splits["validation"] + splits["test"]) == list(range(100))
    for name, share in (("test", 0.2), ("validation", 0.1)):
        counts = Counter(labels[i] for i in splits[name])
        assert counts == {0: round(20 * share), 1: round(50 * share), 2: round(30 * share)}
    with pytest.raises(ValueError, match="val_fraction"):
        stratified_split(labels, 1.0, 0.0, seed=0)
    with pytest.raises(ValueError, match="< 1"):
        stratified_split(labels, 0.5, 0.5, seed=0)


def test_emoji_sentiment_rows_labels_and_split(sentiment):
    assert list(sentiment) == list(SPLITS)
    assert {name: len(split) for name, split in sentiment.items()} == {
        "train": 478,
        "validation": 110,
        "test": 148,
    }
    assert sentiment["train"].features["label"].names == list(SENTIMENT_CLASSES)
    emoji = [e for split in sentiment.values() for e in split["emoji"]]
    assert len(emoji) == len(set(emoji)) == 736  # each ranked, renderable emoji once
    totals = Counter(y for split in sentiment.values() for y in split["label"])
    assert totals == {0: 70, 1: 253, 2: 413}
    for name in ("validation", "test"):  # stratified: each split has the overall proportions
        counts = Counter(sentiment[name]["label"])
        for label, total in totals.items():
            assert counts[label] / len(sentiment[name]) == pytest.approx(total / 736, abs=0.03)
    # every label is the arg-max of the ranking's counts for that emoji (ranking keys lack U+FE0F)
    for split in sentiment.values():
        for row in split.select_columns(["emoji", "label", "negative", "neutral", "positive"]):
            ranked = (
                EMOJI_SENTIMENT_DICT.get(row["emoji"])
                or EMOJI_SENTIMENT_DICT[row["emoji"].replace("\ufe0f", "")]
            )
            counts = (ranked["negative"], ranked["neutral"], ranked["positive"])
            assert (row["negative"], row["neutral"], row["positive"]) == counts
            assert row["label"] == sentiment_label(*counts)


def test_known_emoji_have_their_expected_polarity_and_name(sentiment):
    rows = {}
    for split in sentiment.values():
        for row in split.select_columns(["emoji", "text", "label"]):
            rows[row["emoji"]] = (row["text"], SENTIMENT_CLASSES[row["label"]])
    assert rows["😂"] == ("face with tears of joy", "positive")  # 3,614 / 4,163 / 6,845 tweets
    assert rows["❤️"] == ("red heart", "positive")  # ranked as "❤", without U+FE0F
    assert rows["😭"][1] == "negative"


def test_the_source_is_built_the_same_way_twice_and_serves_the_datamodule(sentiment):
    fresh = build_emoji_sentiment(cache=False)
    for name in SPLITS:
        assert list(fresh[name]["emoji"]) == list(sentiment[name]["emoji"])
        assert list(fresh[name]["label"]) == list(sentiment[name]["label"])
    assert list(load_dataset_dict("emoji_sentiment")["test"]["emoji"]) == list(sentiment["test"]["emoji"])
    dm = SentimentDataModule("emoji_sentiment", class_weighting="balanced")
    assert dm.classes == list(SENTIMENT_CLASSES)
    assert dm.class_counts == [46, 164, 268]
    image = sentiment["test"][0]["image"]
    assert image.size == (136, 128) and image.mode in ("RGB", "RGBA", "P")
