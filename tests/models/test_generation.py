"""Greedy and beam search over any caption decoder."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from vlkit.models import (
    DecoderStep,
    ShowAttendTellDecoder,
    TransformerCaptionDecoder,
    beam_search,
    greedy_search,
    length_penalty,
)

PAD, UNK, BOS, EOS = 0, 1, 2, 3
V, D = 12, 8


def make(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if name == "sat":
        return ShowAttendTellDecoder(V, D, 6, 10, 5, dropout=0.0).eval()
    return TransformerCaptionDecoder(V, D, 8, 1, 2, dropout=0.0, max_length=16).eval()


def features(seed: int, b: int = 4):
    return torch.randn(b, 5, D, generator=torch.Generator().manual_seed(seed)) * 2


def sequence_log_prob(decoder, feats, tokens, lengths) -> torch.Tensor:
    """log p(tokens) under teacher forcing, tokens counted up to their length."""
    inputs = torch.cat([torch.full((tokens.shape[0], 1), BOS), tokens[:, :-1]], 1)
    log_probs = decoder(feats, None, inputs.clamp_min(0)).logits.log_softmax(-1)
    picked = log_probs.gather(-1, tokens[..., None])[..., 0]  # (b, L)
    keep = torch.arange(tokens.shape[1])[None] < lengths[:, None]
    return (picked * keep).sum(-1)


@pytest.mark.parametrize("name", ["sat", "transformer"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_size_one_follows_the_greedy_path_and_keeps_its_best_ending(name, seed, alpha):
    # the one live prefix is greedy's (its most likely token other than <eos>); every <eos> along
    # that path is a finished candidate, greedy's own ending (or its cut caption) included
    decoder, feats = make(name, seed), features(seed)
    greedy = greedy_search(decoder, feats, None, BOS, EOS, PAD, max_length=7, alpha=alpha)
    beam = beam_search(
        decoder, feats, None, BOS, EOS, PAD, max_length=7, beam_size=1, alpha=alpha, keep_greedy=False
    )
    assert (beam.scores >= greedy.scores - 1e-6).all()
    for row in range(feats.shape[0]):
        length = int(beam.lengths[row])
        tokens = beam.tokens[row, :length].tolist()
        assert tokens[:-1] == greedy.tokens[row, : length - 1].tolist()
        assert tokens[-1] == EOS or tokens == greedy.tokens[row, :length].tolist()
        torch.testing.assert_close(beam.weights[row, :length], greedy.weights[row, :length])
        if beam.scores[row] == greedy.scores[row]:
            assert tokens == greedy.tokens[row, : int(greedy.lengths[row])].tolist()


@pytest.mark.parametrize("name", ["sat", "transformer"])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_beam_never_scores_below_greedy_and_scores_are_the_model_log_probs(name, alpha):
    for seed in range(4):
        decoder, feats = make(name, seed), features(seed)
        greedy = greedy_search(decoder, feats, None, BOS, EOS, PAD, max_length=6, alpha=alpha)
        beam = beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=6, beam_size=4, alpha=alpha)
        assert (beam.scores >= greedy.scores - 1e-5).all()
        for out in (greedy, beam):
            recomputed = sequence_log_prob(decoder, feats, out.tokens, out.lengths)
            torch.testing.assert_close(out.log_probs, recomputed, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out.scores, out.log_probs / length_penalty(out.lengths, alpha))


class TableDecoder(nn.Module):
    """Next-token probabilities depend only on the last token (a fixed table)."""

    def __init__(self, table: dict[int, dict[int, float]], vocab: int) -> None:
        super().__init__()
        logits = torch.full((vocab, vocab), -30.0)
        for prev, nxt in table.items():
            for token, p in nxt.items():
                logits[prev, token] = math.log(p)
        self.register_buffer("logits", logits)

    def init_state(self, feats, mask=None):
        return {"features": feats}

    def step(self, token, state):
        return DecoderStep(self.logits[token], state, torch.ones(token.shape[0], state["features"].shape[1]))


def test_plain_beam_can_end_below_greedy_and_keep_greedy_prevents_it():
    # tokens: 4 = A, 5 = B, 6..9 = x1..x4 (after A), 10, 11 = y1, y2 (after B); z spreads thinly
    A, B, Y1, Y2 = 4, 5, 10, 11
    table = {
        BOS: {A: 0.4, B: 0.36, 6: 0.24},
        A: {6: 0.26, 7: 0.25, 8: 0.25, 9: 0.24},  # greedy: A then x1 (0.104)
        6: {EOS: 1.0},
        B: {Y1: 0.5, Y2: 0.5},  # B-y1, B-y2 (0.18 each) push A-x1 out of a 2-beam
        Y1: {t: 1 / 8 for t in range(4, 12)},
        Y2: {t: 1 / 8 for t in range(4, 12)},
    }
    for t in (7, 8, 9):
        table[t] = {EOS: 1.0}
    for t in (4, 5, 6, 7, 8, 9):
        table.setdefault(t, {EOS: 1.0})
    decoder = TableDecoder(table, V)
    feats = torch.zeros(1, 2, D)
    greedy = greedy_search(decoder, feats, None, BOS, EOS, PAD, max_length=4)
    assert greedy.tokens[0].tolist() == [A, 6, EOS]
    plain = beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=4, beam_size=2, keep_greedy=False)
    assert plain.scores[0] < greedy.scores[0]
    kept = beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=4, beam_size=2)
    assert kept.tokens[0, :3].tolist() == [A, 6, EOS] and kept.scores[0] == greedy.scores[0]
    # a wider beam finds the better caption by itself
    wide = beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=4, beam_size=3, keep_greedy=False)
    assert wide.scores[0] >= greedy.scores[0]


def test_after_eos_comes_padding_and_bos_pad_are_never_generated():
    for seed in range(3):
        decoder, feats = make("sat", seed), features(seed, b=6)
        for out in (
            greedy_search(decoder, feats, None, BOS, EOS, PAD, max_length=8),
            beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=8, beam_size=3),
        ):
            for row, length in zip(out.tokens.tolist(), out.lengths.tolist()):
                assert BOS not in row[:length] and PAD not in row[:length]
                assert all(t == PAD for t in row[length:])
                assert EOS not in row[: length - 1]
            ended = torch.arange(out.tokens.shape[1])[None] >= out.lengths[:, None]
            assert (out.weights[ended] == 0).all()


def test_length_penalty_values_and_effect():
    torch.testing.assert_close(length_penalty(torch.tensor([1, 7]), 1.0), torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(length_penalty(torch.tensor([3]), 0.0), torch.tensor([1.0]))
    # short: BOS -> EOS (p 0.6); long: BOS -> 4 -> 5 -> EOS (0.4 * 0.9 * 0.9 = 0.324)
    table = {BOS: {EOS: 0.6, 4: 0.4}, 4: {5: 0.9, EOS: 0.1}, 5: {EOS: 0.9, 4: 0.1}}
    decoder, feats = TableDecoder(table, V), torch.zeros(1, 2, D)
    plain = beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=5, beam_size=3)
    assert plain.lengths.item() == 1
    # log 0.6 / 1 = -0.51 vs log 0.324 / ((5 + 3) / 6)^α: with α = 4, -1.127 / 3.16 = -0.36 wins
    favoured = beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=5, beam_size=3, alpha=4.0)
    assert favoured.tokens[0, :3].tolist() == [4, 5, EOS]


def test_max_length_cuts_unfinished_captions():
    table = {BOS: {4: 1.0}, 4: {4: 1.0}}
    decoder, feats = TableDecoder(table, V), torch.zeros(2, 2, D)
    for out in (
        greedy_search(decoder, feats, None, BOS, EOS, PAD, max_length=3),
        beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=3, beam_size=2),
    ):
        assert out.tokens.tolist() == [[4, 4, 4]] * 2 and out.lengths.tolist() == [3, 3]


@pytest.mark.parametrize("kwargs", [{"max_length": 0}, {"beam_size": 0}, {"alpha": -1.0}])
def test_bad_settings_are_rejected(kwargs):
    decoder, feats = make("sat", 0), features(0)
    settings = {"max_length": 4, "beam_size": 2, "alpha": 0.0, **kwargs}
    with pytest.raises(ValueError, match="max_length"):
        beam_search(decoder, feats, None, BOS, EOS, PAD, **settings)


# -- beam search against exhaustive search ------------------------------------------------------------
class RandomTableDecoder(TableDecoder):
    """Random next-token logits that depend on the last token; ``<bos>`` and padding never come next."""

    def __init__(self, vocab: int, seed: int) -> None:
        super().__init__({}, vocab)
        logits = 2.0 * torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(seed))
        logits[:, [BOS, PAD]] = float("-inf")
        self.logits.copy_(logits)


def exhaustive_best(decoder: TableDecoder, max_length: int, alpha: float) -> tuple[float, list[int]]:
    """The best-scored caption by enumeration: every sequence that ends with <eos> within max_length
    tokens, and every sequence of max_length tokens without it (cut), scored log p / ((5 + len) / 6)^α."""
    log_probs = decoder.logits.log_softmax(-1).tolist()
    tokens = [t for t in range(decoder.logits.shape[0]) if t not in (BOS, PAD)]
    words = [t for t in tokens if t != EOS]
    best = (float("-inf"), [])
    for length in range(1, max_length + 1):
        for prefix in itertools.product(words, repeat=length - 1):
            endings = [EOS] if length < max_length else tokens  # at max_length, cut captions count too
            for last in endings:
                sequence = [*prefix, last]
                log_p = sum(log_probs[a][b] for a, b in zip([BOS, *sequence], sequence))
                score = log_p / ((5 + length) / 6) ** alpha
                if score > best[0]:
                    best = (score, sequence)
    return best


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 4.0])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("beam_size", [9, 40])
def test_a_beam_as_wide_as_every_prefix_is_exhaustive_search(alpha, seed, beam_size):
    # 3 words and <eos>, at most 3 tokens: 1 + 3 + 9 + 27 = 40 captions, and at most 3² = 9 prefixes
    # to extend at a step; finished hypotheses take no place in the beam, so 9 live prefixes suffice
    vocab, max_length = 6, 3
    decoder, feats = RandomTableDecoder(vocab, seed), torch.zeros(1, 2, D)
    score, sequence = exhaustive_best(decoder, max_length, alpha)
    out = beam_search(
        decoder, feats, None, BOS, EOS, PAD, max_length, beam_size=beam_size, alpha=alpha, keep_greedy=False
    )
    assert out.tokens[0, : int(out.lengths[0])].tolist() == sequence
    assert out.scores[0].item() == pytest.approx(score, abs=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0, 4.0])
@pytest.mark.parametrize("beam_size", [1, 2, 3])
def test_a_narrow_beam_never_scores_below_greedy(alpha, beam_size):
    for seed in range(10):
        decoder, feats = RandomTableDecoder(7, seed), torch.zeros(1, 2, D)
        greedy = greedy_search(decoder, feats, None, BOS, EOS, PAD, max_length=4, alpha=alpha)
        out = beam_search(decoder, feats, None, BOS, EOS, PAD, max_length=4, beam_size=beam_size, alpha=alpha)
        assert out.scores[0] >= greedy.scores[0] - 1e-6
        # the score is that of the returned caption, recomputed from the table
        tokens = out.tokens[0, : int(out.lengths[0])].tolist()
        log_probs = decoder.logits.log_softmax(-1)
        log_p = sum(float(log_probs[a, b]) for a, b in zip([BOS, *tokens], tokens))
        assert out.scores[0].item() == pytest.approx(log_p / ((5 + len(tokens)) / 6) ** alpha, abs=1e-5)


def test_finished_hypotheses_leave_the_beam_and_are_ranked_with_the_length_penalty():
    A = 4
    table = {BOS: {EOS: 0.5, A: 0.5}, A: {A: 0.45, EOS: 0.55}}
    decoder, feats = TableDecoder(table, V), torch.zeros(1, 2, D)
    # a^m <eos>: p = 0.5 · 0.45^(m−1) · 0.55, length m + 1; with α = 4 and at most 5 tokens:
    # <eos>: log 0.5 = −0.693; a <eos>: log 0.275 / (7/6)^4 = −1.291 / 1.852 = −0.697;
    # a a a a <eos>: log 0.02506 / (10/6)^4 = −3.687 / 7.716 = −0.478 (the best; cut a^5: −0.504).
    # Kept in a 2-beam, <eos> and a <eos> would fill it after two steps and end the search.
    out = beam_search(
        decoder, feats, None, BOS, EOS, PAD, max_length=5, beam_size=2, alpha=4.0, keep_greedy=False
    )
    assert out.tokens[0].tolist() == [A, A, A, A, EOS]
    assert out.scores[0].item() == pytest.approx(math.log(0.5 * 0.45**3 * 0.55) / (10 / 6) ** 4, abs=1e-5)
    assert out.scores[0].item() == pytest.approx(-0.478, abs=1e-3)
