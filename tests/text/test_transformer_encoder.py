"""Tests for vlkit.text.TransformerTextEncoder and the text encoder factory."""

from __future__ import annotations

import pytest
import torch

from vlkit.attention import sinusoidal_position_encoding
from vlkit.text import (
    TEXT_ENCODERS,
    LSTMTextEncoder,
    TextEncoderConfig,
    TextEncoderOutput,
    TransformerTextEncoder,
    WordEmbeddingEncoder,
    create_text_encoder,
)

VOCAB = 20


def ids_with_padding():
    ids = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 2, 0, 0]])
    return ids, ids != 0


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_shapes_mask_and_zero_padding(positions):
    enc = TransformerTextEncoder(VOCAB, 16, depth=2, num_heads=4, positions=positions)
    ids, mask = ids_with_padding()
    out = enc(ids)
    assert isinstance(out, TextEncoderOutput)
    assert out.features.shape == (2, 5, 16) and out.weights is None
    assert torch.equal(out.mask, mask)
    assert torch.all(out.features[1, 3:] == 0) and out.features[0].abs().sum() > 0


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_padding_cannot_change_real_tokens(positions):
    enc = TransformerTextEncoder(VOCAB, 16, positions=positions).eval()
    ids, mask = ids_with_padding()
    base = enc(ids, mask).features
    longer = torch.cat([ids, torch.zeros(2, 3, dtype=torch.long)], 1)  # more padding
    torch.testing.assert_close(enc(longer).features[:, :5], base)
    other_pad = ids.clone()
    other_pad[1, 3:] = 11  # padded positions hold other ids, the mask still hides them
    torch.testing.assert_close(enc(other_pad, mask).features, base)


def test_positions_matter_and_sinusoidal_table_is_added():
    enc = TransformerTextEncoder(VOCAB, 16, depth=1).eval()
    ids = torch.tensor([[3, 4, 5]])
    swapped = torch.tensor([[4, 3, 5]])
    a, b = enc(ids).features, enc(swapped).features
    assert not torch.allclose(a[0, 0], b[0, 1])  # the same word at another position differs
    # the first block sees embeddings plus the sinusoidal table
    x = enc.embedding(ids) + sinusoidal_position_encoding(3, 16)
    block_out = enc.blocks[0](x, ids != 0).output
    torch.testing.assert_close(a, enc.norm(block_out))


def test_weights_per_layer_on_request():
    enc = TransformerTextEncoder(VOCAB, 16, depth=3, num_heads=2)
    ids, _mask = ids_with_padding()
    out = enc(ids, need_weights=True)
    assert len(out.weights) == 3 and all(w.shape == (2, 2, 5, 5) for w in out.weights)
    for w in out.weights:
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 5))
        assert torch.all(w[1, :, :, 3:] == 0)


def test_any_padding_pattern_is_allowed():
    enc = TransformerTextEncoder(VOCAB, 16).eval()
    ids = torch.tensor([[0, 3, 4, 0, 5]])  # left and middle padding
    out = enc(ids)
    assert torch.all(out.features[0, [0, 3]] == 0) and torch.all(out.features[0, [1, 2, 4]] != 0)
    other = torch.tensor([[9, 3, 4, 9, 5]])  # other ids at the padded positions, same mask
    torch.testing.assert_close(enc(other, ids != 0).features, out.features)


def test_gradients_reach_every_parameter():
    for positions in ("sinusoidal", "learned"):
        enc = TransformerTextEncoder(VOCAB, 16, depth=2, positions=positions)
        ids, _ = ids_with_padding()
        enc(ids).features.pow(2).sum().backward()
        for name, p in enc.named_parameters():
            if name == "embedding.weight":  # only rows of used ids, never the padding row
                assert p.grad[3].abs().sum() > 0 and torch.all(p.grad[0] == 0)
                continue
            assert p.grad is not None and p.grad.abs().sum() > 0, (positions, name)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vocab_size": 1},
        {"positions": "rotary"},
        {"depth": 0},
        {"max_len": 0},
        {"dim": 18, "num_heads": 4},
    ],
)
def test_constructor_errors(kwargs):
    args = {"vocab_size": VOCAB, "dim": 16} | kwargs
    with pytest.raises(ValueError):
        TransformerTextEncoder(**args)


def test_forward_errors():
    enc = TransformerTextEncoder(VOCAB, 16, max_len=4)
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.ones(1, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 20\)"):
        enc(torch.tensor([[1, 25]]))
    with pytest.raises(ValueError, match="integer"):
        enc(torch.ones(1, 3))
    with pytest.raises(TypeError):
        enc(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3))
    with pytest.raises(ValueError, match="shape"):
        enc(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool))


def test_factory_builds_each_encoder():
    lstm = create_text_encoder("lstm", VOCAB, dim=16, embed_dim=8)
    assert isinstance(lstm, LSTMTextEncoder) and lstm.embedding.embedding_dim == 8 and lstm.dim == 16
    tf = create_text_encoder("transformer", VOCAB, dim=16, depth=3, num_heads=2, positions="learned")
    assert isinstance(tf, TransformerTextEncoder) and len(tf.blocks) == 3
    assert tf.blocks[0].attn.num_heads == 2 and hasattr(tf, "position_embedding")
    emb = create_text_encoder("embedding", VOCAB, dim=16, dropout=0.0)
    assert isinstance(emb, WordEmbeddingEncoder) and emb.embedding.embedding_dim == 16
    assert set(TEXT_ENCODERS) == {"lstm", "transformer", "embedding", "hf"}
    config = TextEncoderConfig.parse({"name": "transformer", "dim": 16, "depth": 3})
    assert config.num_heads == 4 and config.to_dict()["name"] == "transformer"  # the layer's default
    assert len(config.build(vocab_size=VOCAB).blocks) == 3


def test_word_embedding_encoder_is_the_lookup_zeroed_at_padding():
    torch.manual_seed(0)
    enc = WordEmbeddingEncoder(VOCAB, 6)
    ids = torch.tensor([[3, 4, 0], [5, 0, 0]])
    out = enc(ids)
    assert torch.equal(out.mask, ids != 0)
    torch.testing.assert_close(out.features[0, :2], enc.embedding.weight[[3, 4]])
    assert (out.features[ids == 0] == 0).all()
    mask = torch.tensor([[True, False, False], [True, False, False]])  # an explicit mask wins
    assert (enc(ids, mask).features[0, 1] == 0).all()
    with pytest.raises(ValueError, match="vocab_size"):
        WordEmbeddingEncoder(1, 4)
    with pytest.raises(ValueError, match="token ids must lie"):
        enc(torch.tensor([[VOCAB]]))


def test_factory_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        create_text_encoder("gru", VOCAB, dim=16)
    assert "lstm" in str(info.value) and "transformer" in str(info.value)
