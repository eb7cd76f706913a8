"""Caption decoders: Show-Attend-Tell LSTM and Transformer; the decoder block; the regulariser."""

from __future__ import annotations

import pytest
import torch

from vlkit.attention import TransformerDecoderBlock, hard_attention_loss
from vlkit.models import (
    CaptioningModel,
    ShowAttendTellDecoder,
    TransformerCaptionDecoder,
    create_model,
    doubly_stochastic_penalty,
)

V, D = 11, 8


def sat(**kw) -> ShowAttendTellDecoder:
    torch.manual_seed(0)
    args = {"embed_dim": 6, "hidden_dim": 10, "attention_dim": 5, "dropout": 0.0}
    args.update(kw)
    return ShowAttendTellDecoder(V, D, **args)


def transformer(**kw) -> TransformerCaptionDecoder:
    torch.manual_seed(0)
    args = {"dim": 8, "depth": 2, "num_heads": 2, "dropout": 0.0, "max_length": 16}
    args.update(kw)
    return TransformerCaptionDecoder(V, D, **args)


def inputs(b=3, n=5, t=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(b, n, D, generator=g)
    tokens = torch.randint(1, V, (b, t), generator=g)
    return features, tokens


DECODERS = {"sat": sat, "transformer": transformer}


@pytest.mark.parametrize("name", DECODERS)
def test_shapes_and_weights(name):
    decoder = DECODERS[name]().eval()
    features, tokens = inputs()
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    out = (
        decoder(features, mask, tokens)
        if name == "sat"
        else decoder(features, mask, tokens, need_weights=True)
    )
    assert out.logits.shape == (3, 6, V)
    assert out.weights.shape == (3, 6, 5)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(3, 6))
    assert (out.weights[~mask[:, None, :].expand(-1, 6, -1)] == 0).all()
    if name == "sat":
        assert out.gates.shape == (3, 6) and ((out.gates > 0) & (out.gates < 1)).all()
    else:
        assert out.gates is None


@pytest.mark.parametrize("name", DECODERS)
def test_masked_regions_cannot_change_the_output(name):
    decoder = DECODERS[name]().eval()
    features, tokens = inputs()
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[:, 3:] = False
    garbage = features.clone()
    garbage[:, 3:] = 1000.0
    torch.testing.assert_close(decoder(features, mask, tokens).logits, decoder(garbage, mask, tokens).logits)
    # and equals the decoder run on the kept regions only
    torch.testing.assert_close(
        decoder(features, mask, tokens).logits, decoder(features[:, :3], None, tokens).logits
    )


@pytest.mark.parametrize("name", DECODERS)
def test_step_by_step_equals_teacher_forcing(name):
    decoder = DECODERS[name]().eval()
    features, tokens = inputs()
    full = decoder(features, None, tokens)
    state = decoder.init_state(features, None)
    for t in range(tokens.shape[1]):
        logits, state, weights = decoder.step(tokens[:, t], state)
        torch.testing.assert_close(logits, full.logits[:, t], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3))


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("hard", [None, "gumbel"])
def test_gradients_reach_every_parameter(name, hard):
    if name == "transformer" and hard:
        pytest.skip("hard attention is a Show-Attend-Tell option")
    decoder = DECODERS[name](**({"hard_attention": hard} if hard else {})).train()
    features, tokens = inputs()
    features.requires_grad_(True)
    decoder(features, None, tokens).logits.square().sum().backward()
    missing = [n for n, p in decoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing
    assert features.grad.abs().sum() > 0


def test_transformer_is_causal():
    decoder = transformer().eval()
    features, tokens = inputs()
    changed = tokens.clone()
    changed[:, 4:] = (changed[:, 4:] + 1) % V
    a, b = decoder(features, None, tokens).logits, decoder(features, None, changed).logits
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_transformer_ties_embeddings_and_checks_length():
    decoder = transformer()
    assert decoder.out.weight is decoder.embedding.weight
    assert transformer(tie_embeddings=False).out.weight is not transformer().embedding.weight
    features, _ = inputs()
    with pytest.raises(ValueError, match="max_len"):
        decoder(features, None, torch.ones(3, 17, dtype=torch.long))


def test_show_attend_tell_by_hand_one_step():
    """One step from the paper's equations with the module's parameters."""
    decoder = sat().eval()
    features, tokens = inputs(b=2, n=4, t=1)
    out = decoder(features, None, tokens)
    p = dict(decoder.named_parameters())
    mean = features.mean(1)
    h0 = torch.tanh(mean @ p["init_h.weight"].T + p["init_h.bias"])
    c0 = torch.tanh(mean @ p["init_c.weight"].T + p["init_c.bias"])
    # e_i = w_v . tanh(W_h h + W_a a_i)
    hidden = torch.tanh(
        (h0 @ p["score.query_proj.weight"].T)[:, None] + features @ p["score.key_proj.weight"].T
    )
    e = (hidden @ p["score.score_proj.weight"].T)[..., 0]  # (b, n)
    alpha = torch.softmax(e, -1)
    beta = torch.sigmoid(h0 @ p["gate.weight"].T + p["gate.bias"])  # (b, 1)
    z = beta * (alpha[:, :, None] * features).sum(1)
    y = p["embedding.weight"][tokens[:, 0]]
    x = torch.cat([y, z], -1)
    gates = x @ p["lstm.weight_ih"].T + p["lstm.bias_ih"] + h0 @ p["lstm.weight_hh"].T + p["lstm.bias_hh"]
    i, f, g, o = gates.chunk(4, -1)
    c1 = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
    h1 = torch.sigmoid(o) * torch.tanh(c1)
    deep = y + h1 @ p["out_h.weight"].T + p["out_h.bias"] + z @ p["out_z.weight"].T
    logits = deep @ p["out.weight"].T + p["out.bias"]
    torch.testing.assert_close(out.logits[:, 0], logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.weights[:, 0], alpha)
    torch.testing.assert_close(out.gates[:, 0], beta[:, 0])


def test_gate_off_gives_ungated_context():
    decoder = sat(gate=False).eval()
    features, tokens = inputs()
    assert decoder.gate is None and decoder(features, None, tokens).gates is None


def test_hard_attention_contexts_are_single_regions_in_eval():
    decoder = sat(hard_attention="gumbel").eval()
    features, tokens = inputs()
    # eval: argmax location, deterministic
    a, b = decoder(features, None, tokens), decoder(features, None, tokens)
    torch.testing.assert_close(a.logits, b.logits)


def test_reinforce_holds_one_log_prob_per_step_and_masks_padding():
    decoder = sat(hard_attention="reinforce").train()
    features, tokens = inputs()
    token_mask = torch.ones_like(tokens, dtype=torch.bool)
    token_mask[0, 3:] = False
    out = decoder(features, None, tokens, token_mask)
    log_prob, entropy = decoder.hard._pending
    assert log_prob.shape == (3, 6) and (log_prob[0, 3:] == 0).all() and (entropy[0, 3:] == 0).all()
    assert (log_prob[1] < 0).all()
    loss = hard_attention_loss(decoder, -out.logits.logsumexp(-1).sum(-1).detach())
    loss.backward()
    assert decoder.score.score_proj.weight.grad.abs().sum() > 0
    assert decoder.hard._pending is None


def test_doubly_stochastic_penalty_by_hand():
    weights = torch.tensor([[[0.5, 0.5], [1.0, 0.0], [0.3, 0.7]]])  # (1, T=3, n=2)
    steps = torch.tensor([[True, True, False]])
    # totals over the two kept steps: [1.5, 0.5] -> (1-1.5)^2 + (1-0.5)^2 = 0.5
    torch.testing.assert_close(doubly_stochastic_penalty(weights, steps), torch.tensor([0.5]))
    # a masked region does not count: only (1 - 1.5)^2
    regions = torch.tensor([[True, False]])
    torch.testing.assert_close(doubly_stochastic_penalty(weights, steps, regions), torch.tensor([0.25]))


def test_decoder_block_shapes_and_cross_attention_mask():
    torch.manual_seed(0)
    block = TransformerDecoderBlock(8, 2, dim_context=6).eval()
    x, context = torch.randn(2, 4, 8), torch.randn(2, 5, 6)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    out = block(x, context, mask, need_weights=True)
    assert out.output.shape == (2, 4, 8)
    assert out.self_weights.shape == (2, 2, 4, 4) and out.cross_weights.shape == (2, 2, 4, 5)
    assert (out.self_weights.triu(1) == 0).all()  # causal
    assert (out.cross_weights[1, :, :, 2:] == 0).all()
    # the fused path (no weights) gives the same output
    torch.testing.assert_close(block(x, context, mask).output, out.output, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("bad", ["features", "tokens", "mask"])
def test_bad_inputs_are_rejected(bad):
    decoder = sat()
    features, tokens = inputs()
    mask = None
    if bad == "features":
        features = features[..., :5]
    elif bad == "tokens":
        tokens = tokens + V
    else:
        mask = torch.ones(3, 5)
    with pytest.raises((ValueError, TypeError)):
        decoder(features, mask, tokens)


@pytest.mark.parametrize("name", ["caption_sat_small", "caption_transformer_small"])
def test_registered_captioning_models(name):
    torch.manual_seed(0)
    image_encoder = {"backbone": "resnet10t", "feature_index": 1, "dim": 16}
    decoder = {"name": "transformer", "dim": 16} if "transformer" in name else {"name": "show_attend_tell"}
    model = create_model(name, vocab_size=V, bos_id=2, eos_id=3, image_encoder=image_encoder, decoder=decoder)
    assert isinstance(model, CaptioningModel)
    image = torch.randn(2, 3, 32, 32)
    out = model(image, torch.randint(4, V, (2, 5)))
    assert out.logits.shape == (2, 5, V)
    generated = model.eval().generate(image, max_length=4, beam_size=2)
    assert generated.tokens.shape[0] == 2 and generated.tokens.shape[1] <= 4
