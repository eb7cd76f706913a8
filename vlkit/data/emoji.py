"""Emoji captioning: a real image → caption dataset that ships inside packages.

Images are the emoji of the Noto Color Emoji font (Debian ``fonts-noto-color-emoji``, a
CBDT bitmap font) rendered with Pillow, 136×128 RGB on white; captions are the English CLDR
names from the PyPI ``emoji`` package (``EMOJI_DATA[char]["en"]``, e.g. "grinning face with
big eyes"), which also gives the Unicode emoji data used here (qualification status,
Emoji version). Only fully-qualified emoji that the font draws as one glyph are used:
3,788 of the 3,963 in ``emoji`` 2.16 with the Debian 12 font (2.042, Emoji 15.1). The
other 175 are newer than the font (Emoji 16 and later: code points it has no glyph for,
ZWJ sequences it would draw as several glyphs, and the flag of Sark, which it draws as its
unknown-flag placeholder).

Every emoji belongs to a **group**: its base emoji without skin-tone modifiers. The
splits are cut by group, so the skin-tone variants of one emoji never straddle train and
test, and the test split measures captioning of emoji never seen in training. With the
defaults (10% of the 1,898 groups each for validation and test, ``seed=0``) the sizes are
2,988 train / 395 validation / 405 test images.

The table (:func:`emoji_table`) and the renderer (:func:`render_emoji`) are shared with
other emoji datasets (sentiment); :func:`cached_dataset_dict` keeps a built dataset on
disk under ``$VLKIT_CACHE`` (default ``~/.cache/vlkit``), since rendering and encoding all
images takes several seconds. ``emoji`` and ``datasets`` are imported inside the functions
so ``import vlkit`` stays light.

Pillow must have its text-shaping engine (raqm, which needs the FriBiDi library; Debian
``libfribidi0``): without it, ZWJ sequences, flags and skin tones come out as several
glyphs and two thirds of the emoji would be lost.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image, ImageDraw, ImageFont, features

from vlkit.cache import cache_root
from vlkit.data.packaged import cached_dataset_dict, check_split_fractions, emoji_cache_name, png_cell

__all__ = [
    "DEBIAN_EMOJI_FONT",
    "EMOJI_FONT_SIZE",
    "EMOJI_IMAGE_SIZE",
    "EmojiEntry",
    "build_emoji_captions",
    "cache_root",
    "cached_dataset_dict",
    "check_split_fractions",
    "emoji_cache_name",
    "emoji_group",
    "emoji_table",
    "find_emoji_font",
    "load_emoji_font",
    "png_cell",
    "render_emoji",
]

log = logging.getLogger(__name__)

#: Where Debian's ``fonts-noto-color-emoji`` puts the font.
DEBIAN_EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
#: The only pixel size of the bitmap strikes in Noto Color Emoji that FreeType loads.
EMOJI_FONT_SIZE = 109
#: (width, height) of every rendered emoji: the font's glyph cell at that size.
EMOJI_IMAGE_SIZE = (136, 128)

_SKIN_TONES = frozenset(map(chr, range(0x1F3FB, 0x1F400)))  # Fitzpatrick modifiers U+1F3FB–U+1F3FF
_REGIONAL_INDICATORS = frozenset(map(chr, range(0x1F1E6, 0x1F200)))  # flags are pairs of these
_UNKNOWN_FLAG = "\U0001f1e6\U0001f1e6"  # "AA", no region: the font draws its unknown-flag glyph
_VS16 = "\ufe0f"  # emoji presentation selector, present in fully-qualified forms only
# Multi-person sequences whose skin-toned forms are ZWJ sequences while the untoned emoji is
# one code point (Unicode emoji-zwj-sequences.txt): mixed tones belong with the base emoji.
_TONED_SEQUENCE_BASES = {
    "🧑\u200d❤\u200d🧑": "💑",  # couple with heart
    "🧑\u200d❤\u200d💋\u200d🧑": "💏",  # kiss
    "🫱\u200d🫲": "🤝",  # handshake
    "👩\u200d🤝\u200d👨": "👫",  # woman and man holding hands
    "👩\u200d🤝\u200d👩": "👭",  # women holding hands
    "👨\u200d🤝\u200d👨": "👬",  # men holding hands
    "🧑\u200d🐰\u200d🧑": "👯",  # people with bunny ears
    "👩\u200d🐰\u200d👩": "👯\u200d♀️",  # women with bunny ears
    "👨\u200d🐰\u200d👨": "👯\u200d♂️",  # men with bunny ears
    "🧑\u200d\U0001faef\u200d🧑": "🤼",  # people wrestling
    "👩\u200d\U0001faef\u200d👩": "🤼\u200d♀️",  # women wrestling
    "👨\u200d\U0001faef\u200d👨": "🤼\u200d♂️",  # men wrestling
}
#: Part of the cache folder names: bump it whenever the code changes what is built.
_CACHE_VERSION = 2
_MISSING_FONT_HELP = (
    "install the Noto Color Emoji font (Debian/Ubuntu: `apt-get install fonts-noto-color-emoji`) "
    "or set VLKIT_EMOJI_FONT to the path of NotoColorEmoji.ttf"
)


class EmojiEntry(NamedTuple):
    """One fully-qualified emoji that the font renders.

    Attributes:
        char: the emoji, e.g. "👋🏽" (one or more code points).
        name: its CLDR English name in lower-case words, e.g. "waving hand medium skin tone".
        group: its base emoji without skin tone, e.g. "👋" (see :func:`emoji_group`).
        version: the Emoji version that introduced it, e.g. 1.0.
    """

    char: str
    name: str
    group: str
    version: float


# -- font and rendering ---------------------------------------------------------------------
def find_emoji_font() -> Path:
    """The Noto Color Emoji font file.

    Looked up in order: the ``VLKIT_EMOJI_FONT`` environment variable (used as given, no
    fallback), :data:`DEBIAN_EMOJI_FONT`, then ``fc-match 'Noto Color Emoji'`` (fontconfig)
    if it is installed and finds that family.

    Raises:
        FileNotFoundError: if the font is not found; the message says how to install it.
    """
    override = os.environ.get("VLKIT_EMOJI_FONT")
    if override:
        path = Path(override).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"VLKIT_EMOJI_FONT={override!r} is not a file: {_MISSING_FONT_HELP}")
        return path
    if DEBIAN_EMOJI_FONT.is_file():
        return DEBIAN_EMOJI_FONT
    if shutil.which("fc-match"):
        found = subprocess.run(
            ["fc-match", "-f", "%{family}\n%{file}", "Noto Color Emoji"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        ).stdout.split("\n")
        # fc-match always answers with some font: accept it only if it is the emoji family
        if len(found) == 2 and "Noto Color Emoji" in found[0] and Path(found[1]).is_file():
            return Path(found[1])
    raise FileNotFoundError(f"Noto Color Emoji font not found: {_MISSING_FONT_HELP}")


@functools.lru_cache(maxsize=4)
def _load_font(path: str) -> ImageFont.FreeTypeFont:
    if not features.check("raqm"):
        raise RuntimeError(
            "Pillow's text shaping (raqm) is unavailable, so emoji sequences (flags, skin tones, "
            "ZWJ sequences) cannot be rendered as one glyph: install FriBiDi "
            "(Debian/Ubuntu: `apt-get install libfribidi0`) and restart Python"
        )
    return ImageFont.truetype(path, EMOJI_FONT_SIZE, layout_engine=ImageFont.Layout.RAQM)


def load_emoji_font(path: str | Path | None = None) -> ImageFont.FreeTypeFont:
    """Noto Color Emoji at its bitmap size (:data:`EMOJI_FONT_SIZE`), shaped with raqm.

    Args:
        path: the font file; ``None`` uses :func:`find_emoji_font`.

    Raises:
        FileNotFoundError: if the font is not found.
        RuntimeError: if Pillow has no raqm layout engine (FriBiDi missing).
    """
    path = find_emoji_font() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"emoji font {str(path)!r} is not a file: {_MISSING_FONT_HELP}")
    return _load_font(str(path))


def _glyph_box(char: str, font: ImageFont.FreeTypeFont) -> tuple[int, int, int, int] | None:
    """The ink box of ``char`` if the font draws it as one glyph cell, else ``None``."""
    if not isinstance(char, str) or not char:
        return None
    left, top, right, bottom = font.getbbox(char)
    width, height = EMOJI_IMAGE_SIZE
    # no glyph (nothing drawn), or a sequence the font lacks, laid out as several glyphs
    if not (0 < right - left <= width and 0 < bottom - top <= height):
        return None
    return left, top, right, bottom


def _draw(char: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """``char`` drawn centred on a transparent RGBA cell, or ``None`` if nothing is drawn."""
    box = _glyph_box(char, font)
    if box is None:
        return None
    left, top, right, bottom = box
    width, height = EMOJI_IMAGE_SIZE
    origin = ((width - (right - left)) // 2 - left, (height - (bottom - top)) // 2 - top)
    glyph = Image.new("RGBA", EMOJI_IMAGE_SIZE, (255, 255, 255, 0))
    ImageDraw.Draw(glyph).text(origin, char, font=font, embedded_color=True)
    return glyph if glyph.getchannel("A").getbbox() is not None else None


@functools.lru_cache(maxsize=4)
def _unknown_flag(font: ImageFont.FreeTypeFont) -> bytes | None:
    glyph = _draw(_UNKNOWN_FLAG, font)
    return None if glyph is None else glyph.tobytes()


def _draw_emoji(char: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """:func:`_draw`, and ``None`` for a flag that the font draws as its unknown-flag glyph."""
    glyph = _draw(char, font)
    flag = glyph is not None and set(char) <= _REGIONAL_INDICATORS
    if flag and (char == _UNKNOWN_FLAG or glyph.tobytes() == _unknown_flag(font)):
        return None
    return glyph


def render_emoji(char: str, font: ImageFont.FreeTypeFont | None = None) -> Image.Image:
    """Render one emoji, centred, alpha-composited on white.

    Args:
        char: the emoji (one or more code points, e.g. "😀", "👋🏽", "🇫🇷").
        font: from :func:`load_emoji_font`; ``None`` loads the default one.

    Returns:
        RGB image of size :data:`EMOJI_IMAGE_SIZE` (136×128, W×H).

    Raises:
        ValueError: if the font cannot draw ``char`` as one glyph: not an emoji, an emoji
            newer than the font (nothing drawn, or the placeholder of an unknown flag), or a
            sequence that the font would draw as several glyphs.
        FileNotFoundError, RuntimeError: as :func:`load_emoji_font` when ``font`` is None.
    """
    glyph = _draw_emoji(char, load_emoji_font() if font is None else font)
    if glyph is None:
        raise ValueError(f"the emoji font cannot render {char!r} as one glyph")
    white = Image.new("RGBA", EMOJI_IMAGE_SIZE, (255, 255, 255, 255))
    return Image.alpha_composite(white, glyph).convert("RGB")


# -- the emoji table ------------------------------------------------------------------------
def emoji_group(char: str) -> str:
    """The base emoji of ``char``: skin-tone modifiers (U+1F3FB–U+1F3FF) removed.

    The result is the fully-qualified base (so "🕵🏽" → "🕵️", with the U+FE0F that the
    toned form does not carry), and the mixed-tone forms of multi-person emoji map to their
    one-code-point base ("👩🏻‍🤝‍👨🏿" → "👫"). For a string without skin tones it is the
    string itself.
    """
    import emoji

    if not _SKIN_TONES & set(char):
        return char
    bare = "".join(c for c in char if c not in _SKIN_TONES)
    key = bare.replace(_VS16, "")
    if key in _TONED_SEQUENCE_BASES:
        return _TONED_SEQUENCE_BASES[key]
    # the fully-qualified spelling: the bare form, or with U+FE0F after some code points
    for candidate in (bare, *_vs16_spellings(key)):
        if _is_fully_qualified(emoji.EMOJI_DATA.get(candidate)):
            return candidate
    return bare


def _vs16_spellings(key: str) -> list[str]:
    """``key`` with U+FE0F inserted after one or every code point that is not a ZWJ."""
    points = [i for i, c in enumerate(key) if c != "\u200d"]
    every = "".join(c + _VS16 if i in points else c for i, c in enumerate(key))
    return [key[: i + 1] + _VS16 + key[i + 1 :] for i in points] + [every]


def _is_fully_qualified(data: dict | None) -> bool:
    import emoji

    return data is not None and data.get("status") == emoji.STATUS["fully_qualified"]


def _caption_name(cldr: str) -> str:
    """``":waving_hand_medium-light_skin_tone:"`` → ``"waving hand medium-light skin tone"``."""
    return " ".join(cldr.strip(":").replace("_", " ").lower().split())


@functools.lru_cache(maxsize=4)
def _table_for(font: ImageFont.FreeTypeFont) -> tuple[EmojiEntry, ...]:
    import emoji

    entries = []
    skipped = []
    for char in sorted(emoji.EMOJI_DATA):  # str order is code-point order
        data = emoji.EMOJI_DATA[char]
        if not _is_fully_qualified(data):
            continue
        # the box tells whether a glyph exists; flags are drawn, to catch the unknown-flag glyph
        flag = set(char) <= _REGIONAL_INDICATORS
        if (_draw_emoji(char, font) if flag else _glyph_box(char, font)) is None:
            skipped.append(char)
            continue
        entries.append(EmojiEntry(char, _caption_name(data["en"]), emoji_group(char), float(data["E"])))
    log.info(
        "emoji table: %d fully-qualified emoji rendered, %d not renderable by the font (e.g. %s)",
        len(entries),
        len(skipped),
        " ".join(skipped[:5]),
    )
    return tuple(entries)


def emoji_table(font: ImageFont.FreeTypeFont | None = None) -> list[EmojiEntry]:
    """All fully-qualified emoji that the font draws as one glyph, sorted by code points.

    3,788 entries with ``emoji`` 2.16 and Noto Color Emoji 2.042 (Debian 12). Computed once
    per font, from glyph boxes (flags are drawn, to leave out the unknown-flag placeholder),
    in a second or two; :func:`render_emoji` draws the images.

    Args:
        font: from :func:`load_emoji_font`; ``None`` loads the default one.

    Raises:
        FileNotFoundError, RuntimeError: as :func:`load_emoji_font` when ``font`` is None.
    """
    return list(_table_for(load_emoji_font() if font is None else font))


# -- the captioning dataset -----------------------------------------------------------------
def _split_groups(
    groups: list[str], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, set[str]]:
    """Sorted groups, shuffled with ``seed``: the first ``test_fraction`` go to test, the
    next ``val_fraction`` to validation, the rest to train."""
    order = sorted(set(groups))
    random.Random(seed).shuffle(order)
    n_test = round(len(order) * test_fraction)
    n_val = round(len(order) * val_fraction)
    return {
        "train": set(order[n_test + n_val :]),
        "validation": set(order[n_test : n_test + n_val]),
        "test": set(order[:n_test]),
    }


def _build_captions(
    font: ImageFont.FreeTypeFont, val_fraction: float, test_fraction: float, seed: int
) -> Any:
    import datasets

    start = time.perf_counter()
    table = emoji_table(font)
    groups = _split_groups([entry.group for entry in table], val_fraction, test_fraction, seed)
    split_of = {group: split for split, members in groups.items() for group in members}
    columns = ("image", "captions", "emoji", "group")
    splits: dict[str, dict[str, list]] = {
        name: {c: [] for c in columns} for name in ("train", "validation", "test")
    }
    for entry in table:
        rows = splits[split_of[entry.group]]
        rows["image"].append(png_cell(render_emoji(entry.char, font)))
        rows["captions"].append([entry.name])
        rows["emoji"].append(entry.char)
        rows["group"].append(entry.group)
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "captions": datasets.Sequence(datasets.Value("string")),
            "emoji": datasets.Value("string"),
            "group": datasets.Value("string"),
        }
    )
    result = datasets.DatasetDict(
        {name: datasets.Dataset.from_dict(rows, features=features) for name, rows in splits.items()}
    )
    log.info(
        "built emoji captions in %.1f s: %s",
        time.perf_counter() - start,
        {name: len(split) for name, split in result.items()},
    )
    return result


def build_emoji_captions(
    val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0, cache: bool = True
) -> Any:
    """Emoji captioning (rendered Noto Color Emoji → CLDR name) as a ``DatasetDict``.

    The emoji of :func:`emoji_table` (3,788), split **by group** (:func:`emoji_group`): the
    groups are sorted, shuffled with ``seed`` and cut, ``test_fraction`` of them to test,
    ``val_fraction`` to validation, the rest to train, so skin-tone variants of one emoji
    are all in the same split. Defaults: 2,988 train / 395 validation / 405 test images
    (1,518 / 190 / 190 groups). Rows are in code-point order within each split.

    Building takes 8-13 s (rendering and PNG-encoding every emoji), so the result is cached
    with ``save_to_disk`` (:func:`cached_dataset_dict`) in ``$VLKIT_CACHE`` (default
    ``~/.cache/vlkit``), in a folder named after the cache version of this code, the
    ``emoji`` and Pillow versions, the font file (size and mtime) and the split arguments;
    loading it takes a few hundredths of a second.

    Args:
        val_fraction: share of the groups in ``validation``, in ``[0, 1)``.
        test_fraction: share of the groups in ``test``, in ``[0, 1)``.
        seed: seed of the group shuffle.
        cache: load from / save to the cache; ``False`` always builds in memory.

    Returns:
        ``DatasetDict`` with splits ``train``, ``validation``, ``test`` and columns
        ``image`` (``datasets.Image``, 136×128 RGB), ``captions`` (list of str: one
        reference, the name; a list so datasets with several references per image go
        through the same code), ``emoji`` (str) and ``group`` (str).

    Raises:
        ValueError: if a fraction is outside ``[0, 1)`` or they sum to 1 or more.
        FileNotFoundError: if the Noto Color Emoji font is not found.
        RuntimeError: if Pillow has no raqm layout engine (FriBiDi missing).
    """
    check_split_fractions(val_fraction, test_fraction)
    path = find_emoji_font()
    font = load_emoji_font(path)
    if not cache:
        return _build_captions(font, val_fraction, test_fraction, seed)
    name = emoji_cache_name(
        "emoji_captions", path, f"v{_CACHE_VERSION}-val{val_fraction}-test{test_fraction}-seed{seed}"
    )
    return cached_dataset_dict(name, lambda: _build_captions(font, val_fraction, test_fraction, seed))
