"""Captioning metrics: hand-computed values, the coco-caption rules, torchmetrics where they agree."""

from __future__ import annotations

import json
import math
import os
import random
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torchmetrics.functional.text import bleu_score, rouge_score

from vlkit.metrics import (
    CaptionMetrics,
    caption_scores,
    caption_tokenize,
    cider_d,
    corpus_bleu,
    rouge_l,
    sentence_bleu,
)

# ------------------------------------------------------------------------------ tokenisation


def test_tokenize_lowercases_and_drops_the_punctuation_coco_caption_removes():
    assert caption_tokenize("A Dog, running; on the GRASS... (fast)!") == [
        "a",
        "dog",
        "running",
        "on",
        "the",
        "grass",
        "fast",
    ]
    assert caption_tokenize('A man\'s "red" T-shirt -- isn\u2019t it?') == [
        "a", "man", "'s", "red", "t-shirt", "is", "n't", "it"
    ]  # fmt: skip
    assert caption_tokenize("2.5 kg, 1,000 dogs & cats.") == ["2.5", "kg", "1,000", "dogs", "&", "cats"]
    assert caption_tokenize(["A", "Dog", "."]) == ["a", "dog", "."]  # tokens are only lower-cased


def test_metrics_tokenise_so_case_and_punctuation_do_not_change_scores():
    references = [["A dog runs on the grass.", "The dog is running!"], ["Two cats, sleeping."]]
    plain = [["a dog runs on the grass", "the dog is running"], ["two cats sleeping"]]
    candidates = ["A dog, running on grass.", "Two CATS sleep."]
    assert caption_scores(candidates, references) == caption_scores(
        ["a dog running on grass", "two cats sleep"], plain
    )


# -------------------------------------------------------------------------------------- BLEU


def test_bleu_by_hand_with_brevity_penalty():
    # c = 4 words, both references 6 words -> r = 6 -> BP = exp(1 - 6/4) = exp(-0.5)
    # unigrams: the, cat, sat matched (clipped at 1 each), down not -> p1 = 3/4
    # bigrams: "the cat", "cat sat" matched, "sat down" not -> p2 = 2/3
    # BLEU-1 = exp(-0.5) * 3/4 ; BLEU-2 = exp(-0.5) * sqrt(3/4 * 2/3) = exp(-0.5) * sqrt(1/2)
    bleu1, bleu2 = corpus_bleu(
        ["the cat sat down"], [["the cat sat on the mat", "a cat sat on a mat"]], max_n=2
    )
    assert bleu1 == pytest.approx(math.exp(-0.5) * 0.75, rel=1e-8)
    assert bleu2 == pytest.approx(math.exp(-0.5) * math.sqrt(0.5), rel=1e-8)


def test_identical_caption_scores_one():
    caption = "a man riding a wave on top of a surfboard"
    assert corpus_bleu([caption], [[caption]]) == pytest.approx([1.0] * 4, abs=1e-6)
    assert rouge_l([caption], [[caption, "a surfer"]]) == pytest.approx(1.0)


def test_corpus_bleu_pools_counts_over_images_unlike_the_mean_sentence_bleu():
    candidates, references = ["a dog runs", "a cat"], [["a dog runs"], ["the bird flies away"]]
    # corpus: matched 3 of 5 unigrams, c = 5, r = 3 + 4 = 7 -> BLEU-1 = 3/5 * exp(1 - 7/5)
    assert corpus_bleu(candidates, references)[0] == pytest.approx(0.6 * math.exp(-0.4), rel=1e-8)
    # per image: 1 and ~0 (no match) -> mean ~0.5
    mean_sentence = sum(sentence_bleu(c, r)[0] for c, r in zip(candidates, references)) / 2
    assert mean_sentence == pytest.approx(0.5, abs=1e-9)
    # with one image the two are the same thing
    assert corpus_bleu(candidates[:1], references[:1]) == sentence_bleu(candidates[0], references[0])


def test_closest_reference_length_tie_goes_to_the_shorter_reference():
    # c = 3, references of 4 and 2 words are equally close: r = 2 (shorter) -> no brevity penalty
    # BLEU-1 = 2/3 ("a", "b" matched of 3); with r = 4 it would be 2/3 * exp(1 - 4/3)
    assert corpus_bleu(["a b c"], [["x y z w", "a b"]], max_n=1) == pytest.approx([2 / 3], rel=1e-8)
    # documented difference: torchmetrics takes the reference listed first
    torchmetrics_bleu = bleu_score(["a b c"], [["x y z w", "a b"]], n_gram=1).item()
    assert torchmetrics_bleu == pytest.approx(2 / 3 * math.exp(1 - 4 / 3), rel=1e-6)


def test_repeated_word_is_clipped_to_its_reference_count():
    # "the" x4 against "the cat": matched min(4, 1) = 1 of 4; c = 4 > r = 2 -> BLEU-1 = 1/4
    assert corpus_bleu(["the the the the"], [["the cat"]], max_n=1) == pytest.approx([0.25], rel=1e-8)


def test_bleu_without_a_match_of_some_order_is_smoothed_not_zero():
    # p1 = 3/4, p2 = 2/3, p3 = 1/2, p4 = 0/1 -> coco-caption: (3/4 · 2/3 · 1/2 · 1e-15)^(1/4), c = r
    bleu4 = corpus_bleu(["a b c d"], [["a b c e"]])[3]
    assert bleu4 == pytest.approx((0.25 * 1e-15) ** 0.25, rel=1e-6)
    # documented difference: torchmetrics gives 0
    assert bleu_score(["a b c d"], [["a b c e"]], n_gram=4).item() == 0.0


def test_adding_a_reference_of_the_effective_length_never_lowers_bleu():
    rng = random.Random(0)
    vocabulary = ["a", "the", "dog", "cat", "on", "grass", "red", "runs"]

    def caption() -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 8)))

    for _ in range(200):
        candidates = [caption() for _ in range(3)]
        references = [[caption() for _ in range(rng.randint(1, 3))] for _ in range(3)]
        before = corpus_bleu(candidates, references)
        # one more reference per image, as long as the closest one: the reference length stays,
        # the clipped counts can only grow
        more = []
        for candidate, refs in zip(candidates, references):
            c = len(candidate.split())
            closest = min((abs(len(r.split()) - c), len(r.split())) for r in refs)[1]
            more.append([*refs, " ".join(rng.choice(vocabulary) for _ in range(closest))])
        after = corpus_bleu(candidates, more)
        assert all(a >= b for a, b in zip(after, before)), (candidates, references, more)


def test_a_closer_longer_reference_can_lower_bleu_through_the_brevity_penalty():
    # c = 5, r = 3 -> no penalty, BLEU-1 = 3/5; adding a 6-word reference makes r = 6 (closer)
    # -> BLEU-1 = 3/5 * exp(1 - 6/5): "more references never lower BLEU" holds only at fixed length
    assert corpus_bleu(["a b c d e"], [["a b c"]], max_n=1) == pytest.approx([0.6], rel=1e-8)
    lowered = corpus_bleu(["a b c d e"], [["a b c", "u v w x y z"]], max_n=1)
    assert lowered == pytest.approx([0.6 * math.exp(-0.2)], rel=1e-8)


@pytest.mark.parametrize(
    ("candidates", "references"),
    [
        (  # no brevity penalty
            [
                "a man riding a red bike down the street",
                "two dogs play in the green grass",
                "a cat sits on a wooden table",
            ],
            [
                ["a man rides a red bike down a street", "a person riding a bicycle"],
                ["two dogs play in the grass", "dogs playing on green grass together"],
                ["a cat sits on a table", "a small cat is sitting on the wooden table"],
            ],
        ),
        (  # short candidates: brevity penalty
            ["a red bike down the street", "two dogs play in the grass"],
            [
                ["a man rides a red bike down the street today", "a person riding a bicycle"],
                ["two dogs play in the grass near the house", "dogs playing on green grass together"],
            ],
        ),
    ],
)
def test_bleu_equals_torchmetrics_where_the_definitions_coincide(candidates, references):
    # every order has a match and no candidate is equally far from two reference lengths
    ours = corpus_bleu(candidates, references)
    for n in range(1, 5):
        theirs = bleu_score(candidates, references, n_gram=n).item()
        assert theirs > 0
        assert ours[n - 1] == pytest.approx(theirs, rel=1e-6)


# ----------------------------------------------------------------------------------- ROUGE-L


def test_rouge_l_by_hand():
    # LCS("a man riding a bike", "a man is riding a red bike") = "a man riding a bike" = 5
    # P = 5/5, R = 5/7, F = (1 + 1.2²) P R / (R + 1.2² P) = 2.44 * 5/7 / (5/7 + 1.44)
    expected = 2.44 * (5 / 7) / (5 / 7 + 1.44)
    assert rouge_l(["a man riding a bike"], [["a man is riding a red bike"]]) == pytest.approx(expected)
    assert expected == pytest.approx(0.809019, abs=1e-6)


def test_rouge_l_takes_max_precision_and_max_recall_over_references_separately():
    # "a b c d" vs "a b": LCS 2 -> P 2/4, R 2/2 ; vs "a b c x y z w v": LCS 3 -> P 3/4, R 3/8
    # P = 3/4 (second reference), R = 1 (first) -> F = 2.44 * 0.75 * 1 / (1 + 1.44 * 0.75)
    references = [["a b", "a b c x y z w v"]]
    assert rouge_l(["a b c d"], references) == pytest.approx(2.44 * 0.75 / (1 + 1.44 * 0.75))
    # documented difference: torchmetrics keeps the one reference with the best F1 (the first: 2/3)
    theirs = rouge_score("a b c d", references, rouge_keys="rougeL")["rougeL_fmeasure"].item()
    assert theirs == pytest.approx(2 / 3, rel=1e-6)


def test_rouge_l_with_beta_one_and_one_reference_equals_torchmetrics():
    candidates = ["a man riding a bike", "two dogs play in the grass"]
    references = [["a man is riding a red bike"], ["dogs play on the green grass"]]
    theirs = [
        rouge_score(c, r, rouge_keys="rougeL")["rougeL_fmeasure"].item()
        for c, r in zip(candidates, references)
    ]
    assert rouge_l(candidates, references, beta=1.0) == pytest.approx(sum(theirs) / 2, rel=1e-6)


def test_rouge_l_is_mean_over_images_and_zero_without_common_word():
    assert rouge_l(["a dog", "a cat"], [["a dog"], ["the bird"]]) == pytest.approx(0.5)


# ----------------------------------------------------------------------------------- CIDEr-D


def test_cider_d_by_hand():
    # 3 images -> log N = log 3. Document frequencies over the reference sets:
    # "a": images 1, 2 ; "dog": images 1, 3 -> weight u = log 3 - log 2 ; every other n-gram: df 1
    # -> weight L = log 3 - log 1. Vectors per order (1..4), entries count * weight:
    # image 1, candidate "a dog runs": n1 {a: u, dog: u, runs: L}, n2 {a dog: L, dog runs: L},
    #   n3 {a dog runs: L}. Reference "a dog runs" is identical: cos = 1, 1, 1, and 0 for n4
    #   (empty) -> mean 3/4. Reference "a dog": n1 {a: u, dog: u}: cos = 2u² / (√(2u²+L²) · √2 u);
    #   n2 {a dog: L}: cos = L² / (√2 L · L) = 1/√2 ; n3, n4: 0 ; length 3 vs 2 -> exp(-1/72).
    #   image 1 = 10 · (3/4 + (√2 u / √(2u²+L²) + 1/√2) / 4 · exp(-1/72)) / 2 references
    # image 2, "a cat" vs "a cat sleeps": n1 cos = (u² + L²) / (√(u²+L²) √(u²+2L²)); n2 cos = 1/√2;
    #   length 2 vs 3 -> exp(-1/72). image 2 = 10 · (√(u²+L²)/√(u²+2L²) + 1/√2) / 4 · exp(-1/72)
    # image 3, "the dog" vs "the dog": n1 = n2 = 1 -> 10 · 2/4 = 5
    u, big, penalty = math.log(3 / 2), math.log(3), math.exp(-1 / 72)
    image1 = (
        10 * (0.75 + (math.sqrt(2) * u / math.sqrt(2 * u**2 + big**2) + 1 / math.sqrt(2)) / 4 * penalty) / 2
    )
    image2 = 10 * (math.sqrt(u**2 + big**2) / math.sqrt(u**2 + 2 * big**2) + 1 / math.sqrt(2)) / 4 * penalty
    expected = (image1 + image2 + 5) / 3
    candidates = ["a dog runs", "a cat", "the dog"]
    references = [["a dog runs", "a dog"], ["a cat sleeps"], ["the dog"]]
    assert cider_d(candidates, references) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(4.577864, abs=1e-6)


def test_cider_d_is_zero_without_common_ngram():
    assert cider_d(["a dog", "zebra crossing"], [["a dog"], ["a cat on a mat"]]) == pytest.approx(2.5)
    # image 2 alone scores 0: its candidate n-grams are absent from its references
    assert cider_d(["zebra crossing", "zebra crossing"], [["a dog"], ["a cat on a mat"]]) == 0.0


def test_cider_d_of_one_image_is_zero():
    # idf log N - log df = log 1 - log 1 = 0 for every n-gram: coco-caption gives 0 as well
    assert cider_d(["a dog runs"], [["a dog runs"]]) == 0.0


def test_cider_d_gaussian_length_penalty():
    # image 2 scores 0, so the corpus score is image 1's / 2; image 1's candidate has 4 words,
    # its reference 2: the penalty is exp(-(4 - 2)² / (2 · 6²)) = exp(-1/18)
    candidates, references = ["a dog a dog", "zebra"], [["a dog"], ["a cat"]]
    without_penalty = cider_d(candidates, references, sigma=1e9)
    with_penalty = cider_d(candidates, references)
    assert with_penalty == pytest.approx(without_penalty * math.exp(-1 / 18), rel=1e-9)
    assert with_penalty < without_penalty
    # a candidate as long as its reference is not penalised
    same_length = (["a dog", "zebra"], references)
    assert cider_d(*same_length) == pytest.approx(cider_d(*same_length, sigma=1e9), rel=1e-12)


def test_cider_d_clips_repeated_ngrams():
    # N = 2, weights: "a" log 2 - log 2 = 0, every other n-gram L = log 2 (df 1, or 0 -> max(1, 0)).
    # image 1, "a dog dog" vs "a dog": n1 cand {a: 0, dog: 2L}, ref {a: 0, dog: L}:
    #   clipped min(2L, L) · L / (2L · L) = 1/2 (the unclipped cosine would be 1);
    #   n2 cand {a dog: L, dog dog: L}, ref {a dog: L}: L² / (√2 L · L) = 1/√2 ; n3, n4: 0;
    #   length 3 vs 2 -> exp(-1/72). image 2 ("zebra" vs "a cat") scores 0.
    expected = 10 * (1 / 2 + 1 / math.sqrt(2)) / 4 * math.exp(-1 / 72) / 2
    assert cider_d(["a dog dog", "zebra"], [["a dog"], ["a cat"]]) == pytest.approx(expected, rel=1e-12)


def test_caption_scores_keys_and_ranges():
    scores = caption_scores(
        ["a dog runs on grass", "a cat"], [["a dog runs", "dogs on grass"], ["a cat sleeps"]]
    )
    assert list(scores) == ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d"]
    assert all(0 <= scores[k] <= 1 for k in list(scores)[:5]) and 0 <= scores["cider_d"] <= 10


# ------------------------------------------------------------------------------ CaptionMetrics

CANDIDATES = ["A dog runs on the grass.", "a cat", "the dog", "two birds fly"]
REFERENCES = [
    ["a dog runs", "A dog running on grass."],
    ["a cat sleeps"],
    ["the dog"],
    ["birds fly", "two birds"],
]


@pytest.mark.filterwarnings("ignore:.*compute.*before.*update.*")
def test_caption_metrics_accumulates_updates_like_one_corpus():
    metric = CaptionMetrics()
    metric.update(CANDIDATES[:2], REFERENCES[:2])
    batch = metric(CANDIDATES[2:], REFERENCES[2:])  # forward: the batch's scores, and accumulates
    assert batch["bleu1"].item() == pytest.approx(
        caption_scores(CANDIDATES[2:], REFERENCES[2:])["bleu1"], rel=1e-6
    )
    computed = metric.compute()
    expected = caption_scores(CANDIDATES, REFERENCES)
    assert list(computed) == list(expected)
    for name, value in expected.items():
        assert computed[name].dtype == torch.float32
        assert computed[name].item() == pytest.approx(value, rel=1e-6)
    metric.reset()
    assert metric.captions == []
    with pytest.raises(ValueError, match="no captions"):
        metric.compute()
    metric.update(CANDIDATES[:2], REFERENCES[:2])
    assert metric.compute()["cider_d"].item() == pytest.approx(
        cider_d(CANDIDATES[:2], REFERENCES[:2]), rel=1e-6
    )


def test_caption_metrics_states_survive_a_distributed_gather():
    # two "processes": this one saw images 0-1, the other 2-3, and a third saw nothing;
    # the fake gather returns every process's state as torchmetrics' all-gather would
    other = CaptionMetrics()
    other.update(CANDIDATES[2:], REFERENCES[2:])
    metric = CaptionMetrics()
    metric.update(CANDIDATES[:1], REFERENCES[:1])
    metric.update(CANDIDATES[1:2], REFERENCES[1:2])

    def gather(local, group=None):
        return [local, torch.cat(other.captions), torch.zeros(0, dtype=local.dtype)]

    metric.dist_sync_fn, metric.distributed_available_fn = gather, lambda: True
    computed = metric.compute()
    for name, value in caption_scores(CANDIDATES, REFERENCES).items():
        assert computed[name].item() == pytest.approx(value, rel=1e-6)
    assert len(metric.captions) == 2  # the local states are restored after compute


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _score_on_rank(rank: int, world_size: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world_size)
    metric = CaptionMetrics()
    shard = {0: slice(0, 3), 1: slice(3, 4), 2: slice(0, 0)}[rank]  # unequal sizes, rank 2 empty
    if CANDIDATES[shard]:
        metric.update(CANDIDATES[shard], REFERENCES[shard])
    scores = {name: value.item() for name, value in metric.compute().items()}
    with open(os.path.join(folder, f"{rank}.json"), "w") as file:
        json.dump(scores, file)
    torch.distributed.destroy_process_group()


@pytest.mark.filterwarnings("ignore:.*compute.*before.*update.*")
@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs the fork start method")
def test_caption_metrics_score_the_whole_corpus_on_every_process(tmp_path):
    # fork: the children need no fresh interpreter, so this takes about a second
    mp.start_processes(_score_on_rank, args=(3, _free_port(), str(tmp_path)), nprocs=3, start_method="fork")
    expected = caption_scores(CANDIDATES, REFERENCES)
    for rank in range(3):
        scores = json.loads((tmp_path / f"{rank}.json").read_text())
        assert scores == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("candidates", "references", "message"),
    [
        (["a dog", "a cat"], [["a dog"]], "one entry per image, got 2 candidates and 1"),
        (["a dog", "a cat"], [["a dog"], []], r"references\[1\] is empty"),
        ([], [], "corpus is empty"),
        ([3], [["a dog"]], r"candidates\[0\] must be a caption string"),
        (["a dog"], [["a dog", None]], r"references\[0\]\[1\] must be a caption string"),
        (["a dog"], ["a dog"], r"references\[0\] must be a list"),
        ("a dog", [["a dog"]], "candidates must be a list"),
    ],
)
def test_malformed_corpus_raises_value_error(candidates, references, message):
    for score in (corpus_bleu, rouge_l, cider_d, caption_scores, CaptionMetrics().update):
        with pytest.raises(ValueError, match=message):
            score(candidates, references)


def test_bad_settings_raise_value_error():
    with pytest.raises(ValueError, match="max_n must be a positive integer"):
        corpus_bleu(["a"], [["a"]], max_n=0)
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        cider_d(["a"], [["a"]], sigma=0.0)
    with pytest.raises(ValueError, match="beta must be a positive number"):
        rouge_l(["a"], [["a"]], beta=-1.0)
    with pytest.raises(ValueError, match="must be a caption string"):
        caption_tokenize(None)
