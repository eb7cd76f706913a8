"""Cross-modal attention (one direction and MulT), MCAN's SA/GA units and reduction, and the
hierarchical co-attention of Lu et al. 2016: hand-computed values under fixed weights, loop
references, and the identities that define each layer."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vlkit.fusion import (
    MCAN,
    AttentionalReduction,
    CrossModalAttention,
    CrossModalTransformer,
    CrossModalTransformerLayer,
    GuidedAttentionUnit,
    HierarchicalCoAttention,
    SelfAttentionUnit,
)


def fill(module: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


def set_linear(linear: nn.Linear, weight, bias=0.0):
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(weight, dtype=linear.weight.dtype))
        if linear.bias is not None:
            linear.bias.fill_(bias)


def uniform_identity_attention(attn) -> None:
    """q/k projections 0 (all scores equal: uniform weights), v and output projections identity."""
    dim = attn.dim
    set_linear(attn.q_proj, torch.zeros(dim, dim))
    set_linear(attn.k_proj, torch.zeros(dim, attn.k_proj.in_features))
    set_linear(attn.v_proj, torch.eye(dim))
    set_linear(attn.out_proj, torch.eye(dim))


def layer_norm(x, eps=1e-5):
    """LayerNorm with unit gain and zero bias, by its formula."""
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


# --------------------------------------------------------------------------------------
# CrossModalAttention (one direction)
# --------------------------------------------------------------------------------------
def test_cross_modal_attention_hand_computed_value():
    layer = CrossModalAttention(2, 2, direction="image_to_text", score="scaled_dot")
    image = torch.tensor([[[1.0, 0.0]]])  # one region r = e1
    text = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # tokens e1, e2
    out = layer(image, None, text, None)
    # scores r·t_i / √2 = [1/√2, 0]; α = softmax; c = α_1 e1 + α_2 e2 = α
    a = math.exp(1 / math.sqrt(2))
    alpha = torch.tensor([a / (a + 1), 1 / (a + 1)])
    torch.testing.assert_close(out.maps["image_to_text"][0, 0], alpha)
    torch.testing.assert_close(out.image_tokens[0, 0], alpha)
    torch.testing.assert_close(out.fused[0], torch.cat([torch.tensor([1.0, 0.0]), alpha]))


@pytest.mark.parametrize("direction", ["image_to_text", "text_to_image"])
def test_cross_modal_attention_matches_loop_reference(direction):
    torch.manual_seed(0)
    layer = CrossModalAttention(5, 3, direction=direction, score="general").double()
    image, text = torch.randn(2, 4, 5, dtype=torch.float64), torch.randn(2, 3, 3, dtype=torch.float64)
    image_len, text_len = [4, 2], [3, 1]
    image_mask = torch.arange(4)[None] < torch.tensor(image_len)[:, None]
    text_mask = torch.arange(3)[None] < torch.tensor(text_len)[:, None]
    out = layer(image, image_mask, text, text_mask)
    score = layer.attention.score
    for b in range(2):
        r, t = image[b, : image_len[b]], text[b, : text_len[b]]
        queries, keys = (r, t) if direction == "image_to_text" else (t, r)
        contexts, weights = [], []
        for q in queries:  # α_i = softmax_i(score(q, k_i)), c = Σ α_i k_i, one score at a time
            s = torch.stack([score(q[None, None], k[None, None])[0, 0, 0] for k in keys])
            alpha = torch.exp(s - s.max()) / torch.exp(s - s.max()).sum()
            weights.append(alpha)
            contexts.append(sum(a * k for a, k in zip(alpha, keys)))
        contexts, weights = torch.stack(contexts), torch.stack(weights)
        tokens = out.image_tokens if direction == "image_to_text" else out.text_tokens
        mapped = out.maps[direction]
        torch.testing.assert_close(tokens[b, : len(queries)], contexts)
        torch.testing.assert_close(mapped[b, : len(queries), : len(keys)], weights)
        key_vec = out.text if direction == "image_to_text" else out.image
        query_vec = out.image if direction == "image_to_text" else out.text
        torch.testing.assert_close(key_vec[b], contexts.mean(0))
        torch.testing.assert_close(query_vec[b], queries.mean(0))


def test_cross_modal_attention_rejects_bad_settings():
    with pytest.raises(ValueError, match="direction"):
        CrossModalAttention(4, 4, direction="both")
    with pytest.raises(ValueError, match="one width"):
        CrossModalAttention(4, 3, score="dot")
    with pytest.raises(ValueError, match="equal image and text widths"):
        CrossModalAttention(4, 3, combine="sum")


# --------------------------------------------------------------------------------------
# CrossModalTransformerLayer / CrossModalTransformer (MulT)
# --------------------------------------------------------------------------------------
def test_cross_modal_transformer_layer_hand_computed_value():
    layer = CrossModalTransformerLayer(4, num_heads=2).eval()
    uniform_identity_attention(layer.attn)
    fill(layer.mlp.fc2, 0.0)  # FFN contributes 0
    x = torch.randn(1, 2, 4)
    context = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    out = layer(x, context, mask).output
    # x + mean over the kept keys of LN(c) (uniform weights, identity v/out projections)
    expected = x + layer_norm(context[:, :2]).mean(1, keepdim=True)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_cross_modal_transformer_reads_source_inputs_at_every_layer():
    torch.manual_seed(1)
    layer = CrossModalTransformer(6, 5, hidden_dim=8, depth=3, num_heads=2).eval()
    image, text = torch.randn(2, 4, 6), torch.randn(2, 3, 5)
    text_mask = torch.tensor([[True, True, True], [True, False, False]])
    out = layer(image, None, text, text_mask)
    image_in, text_in = layer.image_proj(image), layer.text_proj(text)
    x, y = image_in, text_in
    for image_layer, text_layer in zip(layer.image_layers, layer.text_layers):
        x = image_layer(x, text_in, text_mask).output  # keys/values: the text *input*
        y = text_layer(y, image_in, None).output
    torch.testing.assert_close(out.image_tokens, layer.image_norm(x))
    torch.testing.assert_close(out.text_tokens[0], layer.text_norm(y)[0])
    torch.testing.assert_close(out.fused, torch.cat([out.image_tokens.mean(1), out.text], -1))


def test_cross_modal_transformer_need_weights_gives_maps_and_same_output():
    torch.manual_seed(2)
    plain = CrossModalTransformer(6, 5, hidden_dim=8, depth=2, num_heads=2).eval()
    weighted = CrossModalTransformer(6, 5, hidden_dim=8, depth=2, num_heads=2, need_weights=True).eval()
    weighted.load_state_dict(plain.state_dict())
    image, text = torch.randn(2, 4, 6), torch.randn(2, 3, 5)
    text_mask = torch.tensor([[True, True, True], [True, True, False]])
    out_plain, out = plain(image, None, text, text_mask), weighted(image, None, text, text_mask)
    assert out_plain.maps is None
    torch.testing.assert_close(out.fused, out_plain.fused, atol=1e-5, rtol=0)
    assert out.maps["image_to_text"].shape == (2, 2, 4, 3)
    assert out.maps["text_to_image"].shape == (2, 2, 3, 4)
    assert (out.maps["image_to_text"][1, :, :, 2] == 0).all()
    torch.testing.assert_close(out.maps["image_to_text"].sum(-1), torch.ones(2, 2, 4))


def test_cross_modal_transformer_rejects_depth_zero():
    with pytest.raises(ValueError, match="depth"):
        CrossModalTransformer(4, 4, depth=0)


# --------------------------------------------------------------------------------------
# MCAN
# --------------------------------------------------------------------------------------
def test_guided_attention_with_y_equal_x_is_self_attention():
    torch.manual_seed(3)
    sa = SelfAttentionUnit(8, num_heads=2, dropout=0.0).eval()
    ga = GuidedAttentionUnit(8, num_heads=2, dropout=0.0).eval()
    ga.load_state_dict(sa.state_dict())
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    torch.testing.assert_close(ga(x, x, mask).output, sa(x, mask).output)
    y = torch.randn(2, 3, 8)
    assert not torch.allclose(ga(x, y).output, sa(x).output)  # a different guide changes it


def test_self_attention_unit_hand_computed_value():
    unit = SelfAttentionUnit(4, num_heads=1, dropout=0.0).eval()
    uniform_identity_attention(unit.attn)
    fill(unit.ffn[-1], 0.0)  # FFN contributes 0
    x = torch.randn(1, 3, 4)
    mask = torch.tensor([[True, True, False]])
    # X1 = LN(X + mean of the kept rows), X2 = LN(X1 + 0)
    expected = layer_norm(layer_norm(x + x[:, :2].mean(1, keepdim=True)))
    torch.testing.assert_close(unit(x, mask).output, expected, atol=1e-5, rtol=0)


def test_unit_without_ffn_has_no_ffn_parameters():
    unit = SelfAttentionUnit(8, num_heads=2, ffn=False)
    assert unit.ffn is None and unit.norm2 is None
    x = torch.randn(1, 2, 8)
    expected = unit.norm1(x + unit.attn(x).output)
    torch.testing.assert_close(unit.eval()(x).output, expected)


def test_attentional_reduction_hand_computed_value():
    reduction = AttentionalReduction(3, hidden_dim=4, glimpses=2, output_dim=None)
    fill(reduction.mlp[-1], 0.0)  # equal scores: uniform weights over the kept positions
    x = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [9.0, 9.0, 9.0]]])
    out = reduction(x, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(out.weights, torch.tensor([[[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]]]))
    torch.testing.assert_close(out.vector, torch.tensor([[2.0, 2.0, 2.0, 2.0, 2.0, 2.0]]))  # two glimpses
    merged = AttentionalReduction(3, hidden_dim=4, glimpses=1, output_dim=5)
    fill(merged.mlp[-1], 0.0)
    torch.testing.assert_close(merged(x, None).vector, merged.merge(x.mean(1)))


def test_attentional_reduction_rejects_no_glimpses():
    with pytest.raises(ValueError, match="glimpses"):
        AttentionalReduction(3, glimpses=0)


def test_mcan_is_the_encoder_decoder_stack():
    torch.manual_seed(4)
    layer = MCAN(6, 5, hidden_dim=8, depth=3, num_heads=2, dropout=0.0).eval()
    image, text = torch.randn(2, 4, 6), torch.randn(2, 3, 5)
    image_mask = torch.tensor([[True] * 4, [True, True, False, False]])
    text_mask = torch.tensor([[True, True, False], [True, True, True]])
    out = layer(image, image_mask, text, text_mask)
    y = layer.text_proj(text)
    for unit in layer.encoder:
        y = unit(y, text_mask).output
    x = layer.image_proj(image)
    for sa, ga in zip(layer.decoder_self, layer.decoder_guided):
        x = ga(sa(x, image_mask).output, y, text_mask).output  # every GA reads the final Y
    image_vec = layer.image_reduction(x, image_mask).vector
    text_vec = layer.text_reduction(y, text_mask).vector
    torch.testing.assert_close(out.fused, layer.norm(image_vec + text_vec))
    torch.testing.assert_close(out.image_tokens[0], x[0])
    assert out.fused.shape == (2, 16)  # default output_dim = 2 · hidden_dim
    # LayerNorm output: zero mean, unit variance per row
    torch.testing.assert_close(out.fused.mean(-1), torch.zeros(2), atol=1e-5, rtol=0)


def test_mcan_rejects_depth_zero():
    with pytest.raises(ValueError, match="depth"):
        MCAN(4, 4, depth=0)


# --------------------------------------------------------------------------------------
# HierarchicalCoAttention
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("coattention", ["parallel", "alternating"])
def test_hierarchical_hand_computed_value_one_token_one_region(coattention):
    layer = HierarchicalCoAttention(2, 2, hidden_dim=2, coattention=coattention).eval()
    fill(layer, 0.1)
    for module in (layer.phrase_convs, layer.word_proj, layer.phrase_proj, layer.question_proj):
        for name, p in module.named_parameters():
            if "bias" in name:
                p.data.zero_()
    for name, p in layer.question_lstm.named_parameters():
        if "bias" in name:
            p.data.zero_()
    v, q = torch.tensor([0.3, -0.5]), torch.tensor([0.8, 0.4])
    out = layer(v[None, None], None, q[None, None], None)
    # one region and one token: every attention weight is 1, so v̂ = v and q̂ = the level's features
    phrase = math.tanh(0.1 * (0.8 + 0.4))  # every n-gram window holds q and zeros
    gate = 1 / (1 + math.exp(-0.1 * 2 * phrase))  # i = f = o = σ(W x), h0 = c0 = 0
    question = gate * math.tanh(gate * math.tanh(0.2 * phrase))  # h = o · tanh(i · g)
    h_w = math.tanh(0.1 * (0.8 + 0.4 - 0.2))
    h_p = math.tanh(0.1 * (2 * phrase - 0.2 + 2 * h_w))
    h_s = math.tanh(0.1 * (2 * question - 0.2 + 2 * h_p))
    torch.testing.assert_close(out.fused, torch.full((1, 2), h_s), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.text_tokens, torch.full((1, 1, 2), question), atol=1e-6, rtol=0)


def test_hierarchical_phrase_level_is_max_over_ngram_convolutions():
    torch.manual_seed(5)
    layer = HierarchicalCoAttention(3, 3, hidden_dim=4).double()
    words = torch.randn(1, 5, 3, dtype=torch.float64)
    phrases = layer.phrases(words)[0]
    padded = torch.cat([words[0], torch.zeros(2, 3, dtype=torch.float64)])
    for t in range(5):
        grams = []
        for conv in layer.phrase_convs:  # q̂^p_{s,t} = tanh(W_c^s q_{t:t+s-1} + b)
            s = conv.kernel_size[0]
            window = padded[t : t + s].T  # (d, s)
            grams.append(torch.tanh(torch.einsum("ods,ds->o", conv.weight, window) + conv.bias))
        torch.testing.assert_close(phrases[t], torch.stack(grams).amax(0))


def test_hierarchical_fused_is_the_recursive_mlp_of_the_levels():
    torch.manual_seed(6)
    layer = HierarchicalCoAttention(4, 4, hidden_dim=3, coattention="alternating").eval()
    image, text = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    out = layer(image, None, text, mask)
    words = text * mask[..., None]
    phrases = layer.phrases(words) * mask[..., None]
    question = out.text_tokens
    level = {
        k: layer.coattention[k](image, None, f, mask)
        for k, f in (("word", words), ("phrase", phrases), ("question", question))
    }
    h_w = torch.tanh(layer.word_proj(level["word"].image + level["word"].text))
    h_p = torch.tanh(layer.phrase_proj(torch.cat([level["phrase"].image + level["phrase"].text, h_w], -1)))
    h_s = torch.tanh(
        layer.question_proj(torch.cat([level["question"].image + level["question"].text, h_p], -1))
    )
    torch.testing.assert_close(out.fused, h_s)
    torch.testing.assert_close(out.maps["phrase_text"], level["phrase"].text_weights)


def test_hierarchical_rejects_bad_settings():
    with pytest.raises(ValueError, match="image_dim must equal text_dim"):
        HierarchicalCoAttention(4, 3)
    with pytest.raises(ValueError, match="unknown coattention 'dense'") as info:
        HierarchicalCoAttention(4, 4, coattention="dense")
    assert "alternating" in str(info.value)
    with pytest.raises(ValueError, match="phrase_widths"):
        HierarchicalCoAttention(4, 4, phrase_widths=())
    layer = HierarchicalCoAttention(4, 4, hidden_dim=2)
    with pytest.raises(ValueError, match="right-padded"):
        layer(torch.randn(1, 2, 4), None, torch.randn(1, 3, 4), torch.tensor([[False, True, True]]))
