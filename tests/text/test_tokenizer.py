"""Tests for vlkit.text.tokenizer.WordTokenizer: vocabulary building, encoding, persistence."""

from __future__ import annotations

import json

import pytest

from vlkit.text import PAD_TOKEN, UNK_TOKEN, WordTokenizer

CORPUS = ["The cat sat.", "the dog sat!", "A cat, a dog; the end"]
# lower-cased counts: the 3, cat 2, sat 2, dog 2, a 2, "." 1, "!" 1, "," 1, ";" 1, end 1
# frequency descending, ties in code-point order ("!" < "," < "." < ";" < letters)
EXPECTED_VOCAB = [PAD_TOKEN, UNK_TOKEN, "the", "a", "cat", "dog", "sat", "!", ",", ".", ";", "end"]


def test_special_tokens():
    assert PAD_TOKEN == "<pad>" and UNK_TOKEN == "<unk>"
    tok = WordTokenizer.from_corpus(CORPUS)
    assert tok.pad_id == 0 and tok.unk_id == 1
    assert tok.vocabulary[0] == "<pad>" and tok.vocabulary[1] == "<unk>"


def test_from_corpus_orders_by_frequency_then_alphabetically():
    tok = WordTokenizer.from_corpus(CORPUS)
    assert tok.vocabulary == EXPECTED_VOCAB
    assert len(tok) == len(EXPECTED_VOCAB)


def test_from_corpus_ties_are_alphabetical_regardless_of_first_occurrence():
    tok = WordTokenizer.from_corpus(["zebra yak", "xenon yak zebra", "xenon"])  # every word twice
    assert tok.vocabulary == [PAD_TOKEN, UNK_TOKEN, "xenon", "yak", "zebra"]


def test_from_corpus_accepts_a_generator():
    tok = WordTokenizer.from_corpus(text for text in CORPUS)
    assert tok.vocabulary == EXPECTED_VOCAB


def test_encode_known_and_unknown_words():
    tok = WordTokenizer.from_corpus(CORPUS)
    index = {w: i for i, w in enumerate(EXPECTED_VOCAB)}
    assert tok.encode("the cat sat") == [index["the"], index["cat"], index["sat"]]
    assert tok.encode("the zebra sat") == [index["the"], 1, index["sat"]]
    assert tok.encode("Zebra giraffe") == [1, 1]
    # the special tokens' strings are not produced by the splitter: "<pad>" is "<", "pad", ">"
    assert tok.encode("<pad>") == [1, 1, 1]


def test_split_separates_punctuation_and_lowercases():
    assert WordTokenizer.split("Hello, World!") == ["hello", ",", "world", "!"]
    assert WordTokenizer.split("what's  this?") == ["what", "'", "s", "this", "?"]
    assert WordTokenizer.split("Hi", lowercase=False) == ["Hi"]
    assert WordTokenizer.split("x2 is 42") == ["x2", "is", "42"]


def test_encode_is_case_insensitive_by_default():
    tok = WordTokenizer.from_corpus(CORPUS)
    assert tok.encode("THE Cat SAT") == tok.encode("the cat sat")
    assert 1 not in tok.encode("THE Cat SAT")


def test_lowercase_false_keeps_case():
    tok = WordTokenizer.from_corpus(["Cat cat cat"], lowercase=False)
    assert tok.vocabulary == [PAD_TOKEN, UNK_TOKEN, "cat", "Cat"]
    assert tok.encode("Cat cat CAT") == [3, 2, 1]


def test_encode_punctuation_maps_to_its_own_ids():
    tok = WordTokenizer.from_corpus(CORPUS)
    index = {w: i for i, w in enumerate(EXPECTED_VOCAB)}
    assert tok.encode("the dog!") == [index["the"], index["dog"], index["!"]]
    assert tok.encode("the dog?") == [index["the"], index["dog"], 1]  # "?" unseen


def test_min_freq_drops_rare_words():
    tok = WordTokenizer.from_corpus(CORPUS, min_freq=2)
    assert tok.vocabulary == [PAD_TOKEN, UNK_TOKEN, "the", "a", "cat", "dog", "sat"]
    assert tok.encode("the end") == [2, 1]  # "end" was seen once
    tok3 = WordTokenizer.from_corpus(CORPUS, min_freq=3)
    assert tok3.vocabulary == [PAD_TOKEN, UNK_TOKEN, "the"]


def test_max_size_caps_vocabulary_including_specials():
    tok = WordTokenizer.from_corpus(CORPUS, max_size=5)
    assert tok.vocabulary == [PAD_TOKEN, UNK_TOKEN, "the", "a", "cat"]
    assert len(tok) == 5
    assert tok.encode("dog") == [1]
    assert WordTokenizer.from_corpus(CORPUS, max_size=3).vocabulary == [PAD_TOKEN, UNK_TOKEN, "the"]
    assert WordTokenizer.from_corpus(CORPUS, max_size=100).vocabulary == EXPECTED_VOCAB


def test_min_freq_and_max_size_together():
    tok = WordTokenizer.from_corpus(CORPUS, min_freq=2, max_size=4)
    assert tok.vocabulary == [PAD_TOKEN, UNK_TOKEN, "the", "a"]


@pytest.mark.parametrize("text", ["", "   ", "\t\n", None, 3, ["the", "cat"]])
def test_encode_rejects_empty_or_non_string(text):
    tok = WordTokenizer.from_corpus(CORPUS)
    with pytest.raises(ValueError):
        tok.encode(text)


def test_encode_max_length_truncates():
    tok = WordTokenizer.from_corpus(CORPUS)
    full = tok.encode("the cat sat on a dog")
    assert len(full) == 6
    assert tok.encode("the cat sat on a dog", max_length=3) == full[:3]
    assert tok.encode("the cat sat on a dog", max_length=6) == full
    assert tok.encode("the cat sat on a dog", max_length=50) == full


def test_decode_drops_padding():
    tok = WordTokenizer.from_corpus(CORPUS)
    ids = tok.encode("the cat sat") + [0, 0]
    assert tok.decode(ids) == "the cat sat"
    assert tok.decode([2, 1, 0]) == "the <unk>"


def test_save_load_round_trip(tmp_path):
    tok = WordTokenizer.from_corpus(CORPUS, min_freq=1)
    path = tmp_path / "vocab.json"
    tok.save(path)
    data = json.loads(path.read_text())
    assert data["vocabulary"] == EXPECTED_VOCAB
    loaded = WordTokenizer.load(path)
    assert loaded.vocabulary == tok.vocabulary
    assert loaded.lowercase is True
    assert loaded.encode("The dog ran!") == tok.encode("The dog ran!")


def test_save_load_keeps_lowercase_flag(tmp_path):
    tok = WordTokenizer.from_corpus(["Cat cat"], lowercase=False)
    path = tmp_path / "vocab.json"
    tok.save(str(path))  # str paths work too
    loaded = WordTokenizer.load(str(path))
    assert loaded.lowercase is False
    # one "Cat" and one "cat": a tie, broken by code point ("C" < "c")
    assert loaded.vocabulary == [PAD_TOKEN, UNK_TOKEN, "Cat", "cat"]
    assert loaded.encode("Cat cat CAT") == [2, 3, 1]


@pytest.mark.parametrize(
    "vocabulary",
    [
        [],
        ["the", "cat"],
        [UNK_TOKEN, PAD_TOKEN, "the"],  # specials in the wrong order
        [PAD_TOKEN, "the", UNK_TOKEN],
        [PAD_TOKEN],
    ],
)
def test_constructor_requires_special_tokens_first(vocabulary):
    with pytest.raises(ValueError, match="<pad>"):
        WordTokenizer(vocabulary)


def test_constructor_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        WordTokenizer([PAD_TOKEN, UNK_TOKEN, "cat", "dog", "cat"])
    with pytest.raises(ValueError, match="duplicate"):
        WordTokenizer([PAD_TOKEN, UNK_TOKEN, PAD_TOKEN])


def test_constructor_accepts_a_valid_vocabulary():
    tok = WordTokenizer([PAD_TOKEN, UNK_TOKEN, "yes", "no"])
    assert len(tok) == 4
    assert tok.encode("No, yes") == [3, 1, 2]


def test_from_corpus_and_encode_reject_bad_settings():
    with pytest.raises(TypeError, match="iterable of strings"):
        WordTokenizer.from_corpus("what color is it")
    with pytest.raises(ValueError, match="max_size"):
        WordTokenizer.from_corpus(["a b"], max_size=2)
    with pytest.raises(ValueError, match="min_freq"):
        WordTokenizer.from_corpus(["a b"], min_freq=0)
    tok = WordTokenizer.from_corpus(["a b"])
    with pytest.raises(ValueError, match="max_length"):
        tok.encode("a b", max_length=0)


def test_caption_tokenizer_frames_with_bos_eos_and_decodes_as_written():
    from vlkit.text import BOS_TOKEN, EOS_TOKEN, WordCaptionTokenizer

    captions = ["woman’s hat", "medium-light skin tone", "a red circle.", "keycap #", "man's shoe"]
    tok = WordCaptionTokenizer.from_corpus(captions)
    assert tok.vocabulary[:4] == ["<pad>", "<unk>", BOS_TOKEN, EOS_TOKEN]
    for caption in captions:
        ids = tok.encode(caption)
        assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
        assert tok.decode(ids) == caption
    # decoding stops at <eos>; padding and <bos> are dropped; unknown words stay visible
    assert tok.decode([tok.bos_id, 4, tok.eos_id, 5, 0]) == tok.vocabulary[4]
    assert tok.decode(tok.encode("a purple hat")) == "a <unk> hat"
    assert tok.encode("a red circle.", max_length=2) == [tok.bos_id, *tok.encode("a red")[1:-1], tok.eos_id]
    with pytest.raises(ValueError, match="must start with"):
        WordCaptionTokenizer(["<pad>", "<unk>", "a"])


def test_create_caption_tokenizer_needs_exactly_one_source():
    from vlkit.text import create_caption_tokenizer

    with pytest.raises(ValueError, match="exactly one"):
        create_caption_tokenizer()
    with pytest.raises(ValueError, match="exactly one"):
        create_caption_tokenizer(["<pad>", "<unk>", "<bos>", "<eos>"], "some/tokenizer")


# references as titles are written: spaced and inner hyphens, possessives, numbers, punctuation
TITLES = [
    "france - maine: the coast at night",
    "a medium-light skin tone, raised hand",
    "woman’s red hat (1,000 sold)",
    "the man's t-shirt - 2.5 metres long!",
    "don't stop - the 1990s tour",
]


def test_a_caption_that_reads_like_its_reference_scores_as_equal():
    from vlkit.metrics import caption_scores, caption_tokenize
    from vlkit.text import WordCaptionTokenizer

    tok = WordCaptionTokenizer.from_corpus(TITLES)
    generated = [tok.decode(tok.encode(title)) for title in TITLES]  # the caption a model would emit
    assert generated[0] == "france - maine: the coast at night"  # not "france-maine", one other token
    for caption, title in zip(generated, TITLES):
        assert caption_tokenize(caption) == caption_tokenize(title)
    scores = caption_scores(generated, [[title] for title in TITLES])
    # BLEU-4 of a corpus of exact matches: every n-gram matched, no brevity penalty
    assert scores["bleu4"] == pytest.approx(1.0, abs=1e-9)
    # CIDEr-D: a candidate equal to its only reference has cosine 1 at every order and no length
    # penalty (no n-gram is in every image's references, so none weighs 0): 10 per image, the most
    assert scores["cider_d"] == pytest.approx(10.0, abs=1e-9)


def test_caption_tokens_are_the_metric_tokens_with_punctuation_kept():
    from vlkit.metrics import caption_tokenize
    from vlkit.text import WordCaptionTokenizer

    assert WordCaptionTokenizer.split("A man's T-shirt, 1,000 - don’t.") == [
        "a", "man", "'s", "t-shirt", ",", "1,000", "-", "do", "n’t", ".",
    ]  # fmt: skip
    for title in TITLES:
        dropped = set("'\"`(){}.?!,:;-")
        kept = [t.replace("’", "'") for t in WordCaptionTokenizer.split(title) if not set(t) <= dropped]
        assert kept == caption_tokenize(title)
