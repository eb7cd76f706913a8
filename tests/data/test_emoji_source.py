"""Emoji captioning source: font lookup, rendering, the emoji table, the group split, caching."""

from __future__ import annotations

import random
import re

import datasets
import emoji
import numpy as np
import pytest
from PIL import Image, ImageDraw

import vlkit.data.emoji as emoji_source
from vlkit.data import load_dataset_dict
from vlkit.data.emoji import (
    EMOJI_IMAGE_SIZE,
    build_emoji_captions,
    cache_root,
    cached_dataset_dict,
    emoji_group,
    emoji_table,
    find_emoji_font,
    load_emoji_font,
    render_emoji,
)

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def table():
    return emoji_table()


@pytest.fixture(scope="module")
def captions():
    return build_emoji_captions()  # cached under $VLKIT_CACHE after the first run


# -- font and rendering ---------------------------------------------------------------------
def test_render_emoji_is_an_rgb_glyph_on_white():
    face = render_emoji("😀")
    assert face.mode == "RGB" and face.size == EMOJI_IMAGE_SIZE == (136, 128)
    pixels = np.asarray(face)
    assert (pixels != 255).any(axis=-1).mean() > 0.3  # the face covers much of the cell
    assert tuple(pixels[0, 0]) == (255, 255, 255)  # transparent corner composited on white
    dog = np.asarray(render_emoji("🐶"))
    assert np.abs(pixels.astype(int) - dog).mean() > 10


def test_render_emoji_draws_sequences_as_one_glyph():
    toned, plain = np.asarray(render_emoji("👋🏽")), np.asarray(render_emoji("👋"))
    assert toned.shape == plain.shape == (128, 136, 3) and not np.array_equal(toned, plain)
    assert render_emoji("🇫🇷").size == EMOJI_IMAGE_SIZE


@pytest.mark.parametrize("text", ["x", "", "😀😀", "\u200d", "🇦🇦"])
def test_render_emoji_rejects_what_the_font_cannot_draw_as_one_glyph(text):
    with pytest.raises(ValueError, match="cannot render"):
        render_emoji(text)


def test_flags_unknown_to_the_font_are_left_out(table):
    # the font draws a region it does not know (here "AA") as a white flag with a "?"
    placeholder = Image.new("RGBA", EMOJI_IMAGE_SIZE, (255, 255, 255, 0))
    ImageDraw.Draw(placeholder).text((0, 0), "🇦🇦", font=load_emoji_font(), embedded_color=True)
    placeholder = np.asarray(Image.alpha_composite(Image.new("RGBA", EMOJI_IMAGE_SIZE, "white"), placeholder))
    assert (placeholder[..., :3] != 255).any()  # the placeholder is drawn
    flags = [e.char for e in table if all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in e.char)]
    assert len(flags) > 250
    for flag in flags:
        assert not np.array_equal(np.asarray(render_emoji(flag)), placeholder[..., :3]), flag


def test_missing_font_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("VLKIT_EMOJI_FONT", str(tmp_path / "missing.ttf"))
    with pytest.raises(FileNotFoundError, match="apt-get install fonts-noto-color-emoji"):
        find_emoji_font()
    with pytest.raises(FileNotFoundError, match="apt-get"):
        build_emoji_captions()
    with pytest.raises(FileNotFoundError, match="VLKIT_EMOJI_FONT"):
        load_emoji_font(tmp_path / "missing.ttf")


def test_font_override_is_used(tmp_path, monkeypatch):
    link = tmp_path / "emoji.ttf"
    link.symlink_to(find_emoji_font())
    monkeypatch.setenv("VLKIT_EMOJI_FONT", str(link))
    assert find_emoji_font() == link


def test_missing_text_shaping_is_reported(tmp_path, monkeypatch):
    link = tmp_path / "emoji.ttf"  # a new path: not in the font cache
    link.symlink_to(find_emoji_font())
    monkeypatch.setattr(emoji_source.features, "check", lambda feature: False)
    with pytest.raises(RuntimeError, match="libfribidi0"):
        load_emoji_font(link)


# -- the emoji table ------------------------------------------------------------------------
def test_table_holds_fully_qualified_renderable_emoji_in_code_point_order(table):
    assert len(table) > 3000
    chars = [entry.char for entry in table]
    assert chars == sorted(chars) and len(set(chars)) == len(chars)
    fully_qualified = emoji.STATUS["fully_qualified"]
    assert all(emoji.EMOJI_DATA[c]["status"] == fully_qualified for c in chars)
    assert "😀" in chars and "🇫🇷" in chars and "❤" not in chars  # unqualified "❤", qualified "❤️"
    assert all(isinstance(entry.version, float) for entry in table)


def test_table_names_are_lower_case_words(table):
    names = {entry.char: entry.name for entry in table}
    assert names["😀"] == "grinning face"
    assert names["👋🏼"] == "waving hand medium-light skin tone"
    for name in names.values():
        assert re.fullmatch(r"\S+( \S+)*", name), name
        assert name == name.lower() and ":" not in name and "_" not in name, name


def test_skin_tone_variants_share_the_base_group(table):
    group = {entry.char: entry.group for entry in table}
    assert group["👋🏽"] == group["👋"] == emoji_group("👋🏽") == "👋"
    assert group["🕵🏽"] == group["🕵️"] == "🕵️"  # the base is spelled with U+FE0F
    assert group["🕵🏿\u200d♀️"] == group["🕵️\u200d♀️"] != group["🕵️"]  # gender is another emoji
    assert group["👩🏻\u200d🤝\u200d👨🏿"] == group["👫🏽"] == "👫"  # mixed tones: the one-code-point base
    assert group["😀"] == "😀"
    chars = set(group)
    assert all(g in chars for g in group.values())  # every group is an emoji of the table


# -- the captioning dataset -----------------------------------------------------------------
def test_captions_splits_cover_the_table_by_group(captions, table):
    assert isinstance(captions, datasets.DatasetDict) and tuple(captions) == SPLITS
    assert sum(len(captions[s]) for s in SPLITS) == len(table)
    groups = {s: set(captions[s]["group"]) for s in SPLITS}
    assert not groups["train"] & groups["test"]
    assert not groups["train"] & groups["validation"] and not groups["validation"] & groups["test"]
    n_groups = len({entry.group for entry in table})
    for split in ("validation", "test"):
        assert abs(len(groups[split]) - 0.1 * n_groups) <= 1
        assert 0.07 < len(captions[split]) / len(table) < 0.13
    # all skin-tone variants follow their group
    split_of = {g: s for s in SPLITS for g in groups[s]}
    emoji_split = {c: s for s in SPLITS for c in captions[s]["emoji"]}
    assert all(emoji_split[entry.char] == split_of[entry.group] for entry in table)


def recipe_split(table, val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """The documented split: sorted groups, shuffled with ``random.Random(seed)``, cut (test
    first, then validation); rows in table (code-point) order."""
    order = sorted({entry.group for entry in table})
    random.Random(seed).shuffle(order)
    n_test, n_val = round(test_fraction * len(order)), round(val_fraction * len(order))
    groups = {
        "test": set(order[:n_test]),
        "validation": set(order[n_test : n_test + n_val]),
        "train": set(order[n_test + n_val :]),
    }
    return {split: [entry.char for entry in table if entry.group in groups[split]] for split in SPLITS}


def test_captions_split_follows_the_documented_recipe(captions, table):
    expected = recipe_split(table, 0.1, 0.1, seed=0)
    names = {entry.char: entry.name for entry in table}
    for split in SPLITS:
        assert captions[split]["emoji"] == expected[split]
        assert captions[split]["captions"] == [[names[char]] for char in expected[split]]


def test_captions_rows_are_the_table_entries(captions, table):
    by_char = {entry.char: entry for entry in table}
    test = captions["test"]
    assert test.features["image"] == datasets.Image()
    assert test.features["captions"] == datasets.Sequence(datasets.Value("string"))
    for row in test.select(range(5)):
        entry = by_char[row["emoji"]]
        assert row["captions"] == [entry.name] and row["group"] == entry.group
        assert row["image"].mode == "RGB" and row["image"].size == (136, 128)
        assert np.array_equal(np.asarray(row["image"]), np.asarray(render_emoji(entry.char)))


def test_captions_split_is_deterministic_per_seed(monkeypatch, table):
    small = table[:150]  # built without the cache, so this checks the code as it is now
    monkeypatch.setattr(emoji_source, "emoji_table", lambda font=None: small)

    def build(seed: int) -> dict[str, list[str]]:
        data = build_emoji_captions(0.2, 0.3, seed=seed, cache=False)
        return {split: data[split]["emoji"] for split in SPLITS}

    assert build(0) == build(0) == recipe_split(small, 0.2, 0.3, seed=0)
    assert build(1) == recipe_split(small, 0.2, 0.3, seed=1) != build(0)


@pytest.mark.parametrize(
    "fractions", [(1.0, 0.1), (-0.1, 0.1), (0.1, 1.0), (0.1, -0.5), (0.5, 0.5), (0.7, 0.4)]
)
def test_invalid_fractions_are_rejected(fractions):
    with pytest.raises(ValueError, match="fraction"):
        build_emoji_captions(*fractions)


def test_registered_source_loads_the_captions(captions):
    data = load_dataset_dict("emoji_captions")
    assert isinstance(data, datasets.DatasetDict)
    assert data["validation"]["emoji"] == captions["validation"]["emoji"]


# -- caching --------------------------------------------------------------------------------
def test_captions_are_cached_under_a_versioned_name(captions):
    names = [path.name for path in cache_root().glob("emoji_captions-*")]
    assert any(f"emoji{emoji.__version__}" in name and "seed0" in name for name in names)


def tiny() -> datasets.DatasetDict:
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [1, 2, 3]})})


def test_cached_dataset_dict_builds_once(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return tiny()

    first = cached_dataset_dict("tiny", build, root=tmp_path)
    second = cached_dataset_dict("tiny", build, root=tmp_path)
    assert len(calls) == 1
    assert first["train"]["x"] == second["train"]["x"] == [1, 2, 3]
    assert [path.name for path in tmp_path.iterdir()] == ["tiny"]  # no temporary folder left


def test_cached_dataset_dict_keeps_the_copy_saved_first(tmp_path):
    def build_while_another_process_saves():
        other = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"x": [7]})})
        other.save_to_disk(str(tmp_path / "tiny"))
        return tiny()

    result = cached_dataset_dict("tiny", build_while_another_process_saves, root=tmp_path)
    assert result["train"]["x"] == [7]
    assert [path.name for path in tmp_path.iterdir()] == ["tiny"]
