"""Tests for vlkit.text.lstm.LSTMTextEncoder: shapes, masks, padding invariance, errors, gradients."""

from __future__ import annotations

import pytest
import torch

from vlkit.text import LSTMTextEncoder, TextEncoderOutput

VOCAB, DIM, EMBED = 12, 6, 5


def make_encoder(seed=0, **kwargs):
    torch.manual_seed(seed)
    kwargs = {"dim": DIM, "embed_dim": EMBED, **kwargs}
    return LSTMTextEncoder(VOCAB, **kwargs).eval()


def reference_lstm(encoder: LSTMTextEncoder, ids: list[int]) -> torch.Tensor:
    """Single-layer (bi)LSTM over one unpadded sequence, written from the cell equations.

    ``i, f, g, o = σ, σ, tanh, σ (W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)``,
    ``c_t = f c_{t-1} + i g``, ``h_t = o tanh(c_t)``; the backward direction runs over the
    reversed sequence. Returns ``(len(ids), d)``.
    """
    lstm = encoder.lstm
    x = encoder.embedding.weight.detach()[torch.tensor(ids)]  # (t, e)
    hidden = lstm.hidden_size

    def run(suffix, order):
        w_ih = getattr(lstm, f"weight_ih_l0{suffix}").detach()
        w_hh = getattr(lstm, f"weight_hh_l0{suffix}").detach()
        b = getattr(lstm, f"bias_ih_l0{suffix}").detach() + getattr(lstm, f"bias_hh_l0{suffix}").detach()
        h, c = torch.zeros(hidden), torch.zeros(hidden)
        out = [None] * len(ids)
        for t in order:
            gates = w_ih @ x[t] + w_hh @ h + b
            i, f, g, o = gates.split(hidden)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = h
        return torch.stack(out)

    forward = run("", range(len(ids)))
    if not lstm.bidirectional:
        return forward
    backward = run("_reverse", reversed(range(len(ids))))
    return torch.cat([forward, backward], dim=-1)


IDS = torch.tensor([[3, 4, 5, 6, 7], [8, 2, 0, 0, 0]])  # sample 1 has two real tokens


def test_shapes_and_output_type():
    encoder = make_encoder()
    out = encoder(IDS)
    assert isinstance(out, TextEncoderOutput)
    assert out.features.shape == (2, 5, DIM)
    assert out.mask.shape == (2, 5) and out.mask.dtype == torch.bool


def test_mask_equals_nonzero_ids():
    out = make_encoder()(IDS)
    assert torch.equal(out.mask, IDS != 0)


def test_explicit_mask_is_returned():
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = make_encoder()(IDS, mask)
    assert torch.equal(out.mask, mask)


def test_padded_positions_have_zero_features():
    out = make_encoder()(IDS)
    assert (out.features[1, 2:] == 0).all()
    assert (out.features[0] != 0).any(dim=-1).all()  # real tokens are not zeroed
    assert (out.features[1, :2] != 0).any(dim=-1).all()


def reference_layer_norm(encoder: LSTMTextEncoder, h: torch.Tensor) -> torch.Tensor:
    """``(h - mean) / sqrt(var + eps) * γ + β`` over the feature axis (biased variance)."""
    norm = encoder.norm
    mean = h.mean(-1, keepdim=True)
    var = ((h - mean) ** 2).mean(-1, keepdim=True)
    return (h - mean) / torch.sqrt(var + norm.eps) * norm.weight.detach() + norm.bias.detach()


@pytest.mark.parametrize("norm", [True, False])
@pytest.mark.parametrize("bidirectional, dim", [(True, 6), (False, 5)])
def test_matches_cell_equations_on_unpadded_tokens(bidirectional, dim, norm):
    encoder = make_encoder(dim=dim, bidirectional=bidirectional, norm=norm)
    if norm:  # non-trivial affine parameters, so a skipped γ/β would show
        torch.nn.init.uniform_(encoder.norm.weight, 0.5, 1.5)
        torch.nn.init.uniform_(encoder.norm.bias, -0.5, 0.5)
    out = encoder(IDS)
    for b, length in enumerate([5, 2]):
        expected = reference_lstm(encoder, IDS[b, :length].tolist())
        if norm:
            expected = reference_layer_norm(encoder, expected)
        assert expected.shape == (length, dim)
        torch.testing.assert_close(out.features[b, :length], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("bidirectional, dim", [(True, 6), (False, 5)])
def test_extra_padding_does_not_change_real_token_features(bidirectional, dim):
    encoder = make_encoder(seed=1, dim=dim, bidirectional=bidirectional)
    short = torch.tensor([[3, 9, 4], [5, 0, 0]])
    long = torch.cat([short, torch.zeros(2, 4, dtype=torch.long)], dim=1)  # 4 more pads
    out_short, out_long = encoder(short), encoder(long)
    assert out_long.features.shape == (2, 7, dim)
    torch.testing.assert_close(out_long.features[:, :3], out_short.features, atol=1e-6, rtol=1e-6)
    assert (out_long.features[:, 3:] == 0).all()


def test_other_rows_do_not_change_a_row():
    encoder = make_encoder()
    alone = encoder(IDS[1:2]).features
    batched = encoder(IDS).features[1:2]
    torch.testing.assert_close(batched, alone, atol=1e-6, rtol=1e-6)


def test_all_padding_row_gives_zero_features_and_no_nan():
    encoder = make_encoder()
    out = encoder(torch.tensor([[0, 0, 0], [4, 5, 0]]))
    assert torch.isfinite(out.features).all()
    assert (out.features[0] == 0).all()
    assert not out.mask[0].any()


def test_bidirectional_odd_dim_raises():
    with pytest.raises(ValueError, match="even"):
        LSTMTextEncoder(VOCAB, dim=5, bidirectional=True)
    LSTMTextEncoder(VOCAB, dim=5, bidirectional=False)  # fine unidirectional


def test_bidirectional_splits_dim_between_directions():
    encoder = LSTMTextEncoder(VOCAB, dim=8, embed_dim=EMBED)
    assert encoder.lstm.hidden_size == 4 and encoder.lstm.bidirectional


def test_vocab_size_too_small_raises():
    with pytest.raises(ValueError, match="vocab_size"):
        LSTMTextEncoder(1, dim=DIM)


@pytest.mark.parametrize("bad", [[[3, VOCAB, 0]], [[3, -1, 0]], [[VOCAB + 5, 1, 2]]])
def test_ids_out_of_range_raise(bad):
    with pytest.raises(ValueError, match="token ids"):
        make_encoder()(torch.tensor(bad))


def test_float_or_wrong_rank_ids_raise():
    encoder = make_encoder()
    with pytest.raises(ValueError):
        encoder(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError):
        encoder(torch.tensor([1, 2, 3]))


def test_left_padded_ids_raise():
    with pytest.raises(ValueError, match="right-padded"):
        make_encoder()(torch.tensor([[0, 0, 3, 4], [3, 4, 5, 6]]))


def test_hole_in_the_middle_raises():
    with pytest.raises(ValueError, match="right-padded"):
        make_encoder()(torch.tensor([[3, 0, 4, 0]]))


def test_left_padded_explicit_mask_raises():
    ids = torch.tensor([[3, 4, 5]])
    with pytest.raises(ValueError, match="right-padded"):
        make_encoder()(ids, torch.tensor([[False, True, True]]))


def test_non_bool_mask_raises_type_error():
    with pytest.raises(TypeError):
        make_encoder()(IDS, (IDS != 0).long())


def test_gradients_reach_embedding_and_lstm():
    torch.manual_seed(0)
    encoder = LSTMTextEncoder(VOCAB, dim=DIM, embed_dim=EMBED, num_layers=2)
    encoder.train()
    out = encoder(IDS)
    out.features.sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None, name
        assert (p.grad != 0).any(), name
    # the padding embedding row receives no gradient (padding_idx=0)
    assert (encoder.embedding.weight.grad[0] == 0).all()
    # rows of ids that appear get gradient, unused ids do not
    used = set(IDS.flatten().tolist()) - {0}
    for i in range(1, VOCAB):
        assert bool((encoder.embedding.weight.grad[i] != 0).any()) == (i in used), i
