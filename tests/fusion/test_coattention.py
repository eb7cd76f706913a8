"""Tests for vlkit.fusion.coattention against docs/mechanisms.md#co-attention (Lu et al., NeurIPS 2016).

The references below follow the paper literally, in its column convention: per sample,
``V`` is a ``(d_v × n)`` matrix whose columns are regions and ``Q`` a ``(d_q × l)`` matrix
whose columns are tokens; they loop over columns and compute the softmax by an explicit
exp / sum. They run on the *unpadded* sequences only, so comparing them with a layer fed
padded inputs checks the mask semantics ("padding tokens must get zero weight and must not
change any output").
"""

from __future__ import annotations

import math

import pytest
import torch

from vlkit.fusion import AlternatingCoAttention, FusionOutput, GuidedAttention, ParallelCoAttention

D_V, D_Q, K = 6, 3, 4  # d_v != d_q on purpose
B, N, L = 2, 5, 4  # n != l so a swapped C / Cᵀ cannot pass by shape
ATOL = 1e-5
LAYERS = [ParallelCoAttention, AlternatingCoAttention]
LAYER_IDS = ["parallel", "alternating"]


# --------------------------------------------------------------------------------------
# Loop-based references (paper convention: features are columns)
# --------------------------------------------------------------------------------------
def _softmax(scores: list[torch.Tensor]) -> torch.Tensor:
    """softmax by explicit exp / sum over a list of scalar scores."""
    top = max(float(s) for s in scores)
    exps = [torch.exp(s - top) for s in scores]
    total = sum(exps)
    return torch.stack([e / total for e in exps])


def reference_parallel(layer: ParallelCoAttention, image: torch.Tensor, text: torch.Tensor):
    """One sample: image (n, d_v) and text (l, d_q), unpadded. Returns v̂, q̂, a_v, a_q."""
    V = image.T  # (d_v, n), column i = v_i
    Q = text.T  # (d_q, l), column j = q_j
    n, l = V.shape[1], Q.shape[1]
    W_b = layer.affinity.detach()  # (d_q, d_v)
    W_v = layer.image_proj.weight.detach()  # (k, d_v)
    W_q = layer.text_proj.weight.detach()  # (k, d_q)
    w_hv = layer.image_score.weight.detach()[0]  # (k,)
    w_hq = layer.text_score.weight.detach()[0]  # (k,)

    # C = tanh(Qᵀ W_b V), (l × n): C[j, i] = tanh(q_jᵀ W_b v_i)
    C = torch.zeros(l, n, dtype=V.dtype)
    for j in range(l):
        for i in range(n):
            C[j, i] = torch.tanh(Q[:, j] @ W_b @ V[:, i])
    WvV = W_v @ V  # (k, n)
    WqQ = W_q @ Q  # (k, l)
    # H_v = tanh(W_v V + (W_q Q) C): column i = tanh(W_v v_i + Σ_j (W_q q_j) C[j, i])
    H_v = torch.stack(
        [torch.tanh(WvV[:, i] + sum(WqQ[:, j] * C[j, i] for j in range(l))) for i in range(n)], 1
    )
    # H_q = tanh(W_q Q + (W_v V) Cᵀ): column j = tanh(W_q q_j + Σ_i (W_v v_i) C[j, i])
    H_q = torch.stack(
        [torch.tanh(WqQ[:, j] + sum(WvV[:, i] * C[j, i] for i in range(n))) for j in range(l)], 1
    )
    a_v = _softmax([w_hv @ H_v[:, i] for i in range(n)])
    a_q = _softmax([w_hq @ H_q[:, j] for j in range(l)])
    v_hat = sum(a_v[i] * V[:, i] for i in range(n))
    q_hat = sum(a_q[j] * Q[:, j] for j in range(l))
    return v_hat, q_hat, a_v, a_q


def reference_guided(module: GuidedAttention, X: torch.Tensor, g: torch.Tensor | None):
    """x̂ = A(X; g) for one sample, X (d × m) columns; g = None means g = 0."""
    W_x = module.input_proj.weight.detach()  # (k, d_x)
    w_hx = module.score.weight.detach()[0]  # (k,)
    k = W_x.shape[0]
    guide = torch.zeros(k, dtype=X.dtype) if g is None else module.guide_proj.weight.detach() @ g  # W_g g
    m = X.shape[1]
    # H = tanh(W_x X + (W_g g) 1ᵀ): column i = tanh(W_x x_i + W_g g)
    H = torch.stack([torch.tanh(W_x @ X[:, i] + guide) for i in range(m)], 1)
    a = _softmax([w_hx @ H[:, i] for i in range(m)])
    return sum(a[i] * X[:, i] for i in range(m)), a


def reference_alternating(layer: AlternatingCoAttention, image: torch.Tensor, text: torch.Tensor):
    """One sample, unpadded. Returns v̂, q̂, a_v (step 2), a_q (step 3)."""
    V, Q = image.T, text.T
    s_hat, _ = reference_guided(layer.summarise_text, Q, None)  # step 1: ŝ = A(Q; 0)
    v_hat, a_v = reference_guided(layer.attend_image, V, s_hat)  # step 2: v̂ = A(V; ŝ)
    q_hat, a_q = reference_guided(layer.attend_text, Q, v_hat)  # step 3: q̂ = A(Q; v̂)
    return v_hat, q_hat, a_v, a_q


REFERENCES = {ParallelCoAttention: reference_parallel, AlternatingCoAttention: reference_alternating}


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def make_layer(cls, seed=0):
    torch.manual_seed(seed)
    return cls(D_V, D_Q, hidden_dim=K).double().eval()


def make_inputs(seed=0, n=N, l=L):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(B, n, D_V, generator=g, dtype=torch.float64)
    text = torch.randn(B, l, D_Q, generator=g, dtype=torch.float64)
    return image, text


def assert_matches_reference(layer, out, image, text, n_valid, l_valid):
    """Compare every sample of ``out`` with the reference run on its unpadded prefix."""
    reference = REFERENCES[type(layer)]
    for b in range(image.shape[0]):
        n_b, l_b = n_valid[b], l_valid[b]
        v_hat, q_hat, a_v, a_q = reference(layer, image[b, :n_b], text[b, :l_b])
        torch.testing.assert_close(out.image[b], v_hat, atol=ATOL, rtol=0)
        torch.testing.assert_close(out.text[b], q_hat, atol=ATOL, rtol=0)
        torch.testing.assert_close(out.image_weights[b, :n_b], a_v, atol=ATOL, rtol=0)
        torch.testing.assert_close(out.text_weights[b, :l_b], a_q, atol=ATOL, rtol=0)
        # padding invariance: padded positions get weight exactly 0
        assert (out.image_weights[b, n_b:] == 0).all()
        assert (out.text_weights[b, l_b:] == 0).all()


# --------------------------------------------------------------------------------------
# agreement with the paper's equations (docs/mechanisms.md#co-attention)
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_loop_reference_without_masks(cls, seed):
    layer = make_layer(cls, seed)
    image, text = make_inputs(seed)
    out = layer(image, None, text, None)
    assert isinstance(out, FusionOutput)
    assert_matches_reference(layer, out, image, text, [N] * B, [L] * B)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_all_true_masks_equal_no_masks(cls):
    layer = make_layer(cls)
    image, text = make_inputs(3)
    plain = layer(image, None, text, None)
    masked = layer(image, torch.ones(B, N, dtype=torch.bool), text, torch.ones(B, L, dtype=torch.bool))
    for a, b in zip(plain, masked):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def _pad(x: torch.Tensor, valid: list[int], total: int, seed: int):
    """Right-pad each sample's first ``valid[b]`` rows to ``total`` with large random garbage."""
    g = torch.Generator().manual_seed(seed)
    padded = 10.0 * torch.randn(x.shape[0], total, x.shape[2], generator=g, dtype=x.dtype)
    mask = torch.zeros(x.shape[0], total, dtype=torch.bool)
    for b, v in enumerate(valid):
        padded[b, :v] = x[b, :v]
        mask[b, :v] = True
    return padded, mask


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_text_padding_matches_unpadded_reference(cls):
    layer = make_layer(cls)
    image, text = make_inputs(4)
    l_valid = [L, 2]  # sample 1 has two real tokens, then garbage
    text_padded, text_mask = _pad(text, l_valid, L + 3, seed=40)
    out = layer(image, None, text_padded, text_mask)
    assert out.text_weights.shape == (B, L + 3)
    assert_matches_reference(layer, out, image, text_padded, [N] * B, l_valid)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_image_padding_matches_unpadded_reference(cls):
    layer = make_layer(cls)
    image, text = make_inputs(5)
    n_valid = [3, N]  # sample 0 has three real regions, then garbage
    image_padded, image_mask = _pad(image, n_valid, N + 2, seed=50)
    out = layer(image_padded, image_mask, text, None)
    assert out.image_weights.shape == (B, N + 2)
    assert_matches_reference(layer, out, image_padded, text, n_valid, [L] * B)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_both_paddings_matches_unpadded_reference(cls):
    layer = make_layer(cls)
    image, text = make_inputs(6)
    n_valid, l_valid = [2, 4], [3, 1]
    image_padded, image_mask = _pad(image, n_valid, N, seed=60)
    text_padded, text_mask = _pad(text, l_valid, L, seed=61)
    out = layer(image_padded, image_mask, text_padded, text_mask)
    assert_matches_reference(layer, out, image_padded, text_padded, n_valid, l_valid)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_garbage_in_padding_cannot_change_outputs(cls):
    layer = make_layer(cls)
    image, text = make_inputs(7)
    image_mask = torch.tensor([[True] * N, [True, True, False, False, False]])
    text_mask = torch.tensor([[True, True, True, False], [True] * L])
    out1 = layer(image, image_mask, text, text_mask)
    image2, text2 = image.clone(), text.clone()
    image2[~image_mask] = -7.0
    text2[~text_mask] = 123.0
    out2 = layer(image2, image_mask, text2, text_mask)
    for a, b in zip(out1, out2):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------
# defining identities, shapes, gradients
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_shapes_and_weights_sum_to_one(cls):
    torch.manual_seed(0)
    layer = cls(D_V, D_Q, hidden_dim=K).eval()
    image, text = (t.float() for t in make_inputs(8))
    image_mask = torch.tensor([[True] * N, [True, False, True, True, False]])
    text_mask = torch.tensor([[True, True, False, False], [True] * L])
    out = layer(image, image_mask, text, text_mask)
    assert out.image.shape == (B, D_V)
    assert out.text.shape == (B, D_Q)
    assert out.image_weights.shape == (B, N)
    assert out.text_weights.shape == (B, L)
    assert (out.image_weights >= 0).all() and (out.text_weights >= 0).all()
    torch.testing.assert_close(out.image_weights.sum(-1), torch.ones(B))
    torch.testing.assert_close(out.text_weights.sum(-1), torch.ones(B))
    assert (out.image_weights[~image_mask] == 0).all()
    assert (out.text_weights[~text_mask] == 0).all()
    # v̂ and q̂ are the weighted sums of the inputs
    torch.testing.assert_close(out.image, torch.einsum("bn,bnd->bd", out.image_weights, image))
    torch.testing.assert_close(out.text, torch.einsum("bl,bld->bd", out.text_weights, text))


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_all_masked_text_row_gives_zero_weights_and_no_nan(cls):
    torch.manual_seed(0)
    layer = cls(D_V, D_Q, hidden_dim=K).eval()
    image, text = (t.float() for t in make_inputs(9))
    text_mask = torch.tensor([[True] * L, [False] * L])
    out = layer(image, None, text, text_mask)
    for t in (*out[:5], *out.maps.values()):
        assert torch.isfinite(t).all()
    assert (out.text_weights[1] == 0).all()
    assert (out.text[1] == 0).all()  # zero context
    torch.testing.assert_close(out.text_weights[0].sum(), torch.tensor(1.0))
    torch.testing.assert_close(out.image_weights.sum(-1), torch.ones(B))  # images still attended


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_gradients_reach_every_parameter(cls):
    torch.manual_seed(0)
    layer = cls(D_V, D_Q, hidden_dim=K)
    image, text = (t.float() for t in make_inputs(10))
    out = layer(image, None, text, torch.tensor([[True] * L, [True, True, True, False]]))
    loss = out.image.sum() + out.text.sum()
    loss.backward()
    params = dict(layer.named_parameters())
    assert params  # the layer has parameters at all
    for name, p in params.items():
        assert p.grad is not None, name
        assert (p.grad != 0).any(), name


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_dropout_only_in_training(cls):
    torch.manual_seed(0)
    layer = cls(D_V, D_Q, hidden_dim=K, dropout=0.5)
    image, text = (t.float() for t in make_inputs(11))
    layer.eval()
    eval1 = layer(image, None, text, None)
    eval2 = layer(image, None, text, None)
    torch.testing.assert_close(eval1.image_weights, eval2.image_weights, atol=0, rtol=0)
    layer.train()
    torch.manual_seed(1)
    train = layer(image, None, text, None)
    assert not torch.allclose(train.image_weights, eval1.image_weights)


# --------------------------------------------------------------------------------------
# user errors
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_wrong_widths_raise_value_error(cls):
    layer = cls(D_V, D_Q, hidden_dim=K)
    with pytest.raises(ValueError, match="width"):
        layer(torch.randn(B, N, D_V + 1), None, torch.randn(B, L, D_Q), None)
    with pytest.raises(ValueError, match="width"):
        layer(torch.randn(B, N, D_V), None, torch.randn(B, L, D_Q + 1), None)
    with pytest.raises(ValueError, match="width"):  # swapped modalities
        layer(torch.randn(B, L, D_Q), None, torch.randn(B, N, D_V), None)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_wrong_ranks_or_batches_raise_value_error(cls):
    layer = cls(D_V, D_Q, hidden_dim=K)
    with pytest.raises(ValueError):
        layer(torch.randn(N, D_V), None, torch.randn(B, L, D_Q), None)
    with pytest.raises(ValueError):
        layer(torch.randn(B, N, D_V), None, torch.randn(B + 1, L, D_Q), None)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("which", ["image", "text"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8])
def test_non_bool_mask_raises_type_error(cls, which, dtype):
    layer = cls(D_V, D_Q, hidden_dim=K)
    image, text = torch.randn(B, N, D_V), torch.randn(B, L, D_Q)
    if which == "image":
        args = (image, torch.ones(B, N, dtype=dtype), text, None)
    else:
        args = (image, None, text, torch.ones(B, L, dtype=dtype))
    with pytest.raises(TypeError, match=f"{which}_mask"):
        layer(*args)


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_mask_shape_mismatch_raises_value_error(cls):
    layer = cls(D_V, D_Q, hidden_dim=K)
    image, text = torch.randn(B, N, D_V), torch.randn(B, L, D_Q)
    with pytest.raises(ValueError, match="image_mask"):
        layer(image, torch.ones(B, N - 1, dtype=torch.bool), text, None)
    with pytest.raises(ValueError, match="text_mask"):
        layer(image, None, text, torch.ones(B, L + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="text_mask"):
        layer(image, None, text, torch.ones(B, L, 1, dtype=torch.bool))


def test_unguided_attention_rejects_a_guide():
    module = GuidedAttention(D_Q, None, K)
    with pytest.raises(ValueError, match="guide"):
        module(torch.randn(B, L, D_Q), None, torch.randn(B, D_V))


# --------------------------------------------------------------------------------------
# exact values under constant weights
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_exact_values_under_constant_weights(cls):
    """Every parameter = 1, k = 2, d_v = d_q = 2.

    With all-ones weights every projection of a vector x is ``sum(x) · 1``.
    Image: three identical regions v = (1, -1), sum 0.
    Text: q_1 = (1, -1) (sum 0) and q_2 = (ln 3 / 2, 0) (sum s = ln 3 / 2, tanh(s) = 1/2).

    Parallel: W_v v = 0, so C[j, i] = tanh(q_jᵀ W_b v) = tanh(s_j · 0) = 0. Then
      H_v = tanh(W_v V) = 0 → image scores all 0 → a_v = 1/3 each, v̂ = v;
      H_q[:, j] = tanh(s_j) · 1 → text scores w_hqᵀ H_q[:, j] = 2 tanh(s_j) = (0, 1).
    Alternating: step 1 H[:, j] = tanh(s_j) · 1 → scores (0, 1); step 2 the regions are
      identical → a_v = 1/3, v̂ = v with sum(v̂) = 0; step 3 H[:, j] = tanh(s_j + sum(v̂)) · 1
      → scores (0, 1) again.
    Both: a_q = softmax(0, 1) = (1 / (1 + e), e / (1 + e)), q̂ = a_q1 q_1 + a_q2 q_2.
    """
    torch.manual_seed(0)
    layer = cls(2, 2, hidden_dim=2).double().eval()
    for p in layer.parameters():
        torch.nn.init.constant_(p, 1.0)
    v = [1.0, -1.0]
    s = math.log(3.0) / 2
    image = torch.tensor([[v, v, v]], dtype=torch.float64)  # (1, 3, 2)
    text = torch.tensor([[[1.0, -1.0], [s, 0.0]]], dtype=torch.float64)  # (1, 2, 2)
    out = layer(image, None, text, None)

    e = math.e
    a_q = [1 / (1 + e), e / (1 + e)]
    expected_q_hat = [a_q[0] * 1.0 + a_q[1] * s, a_q[0] * -1.0 + a_q[1] * 0.0]
    torch.testing.assert_close(
        out.image_weights, torch.full((1, 3), 1 / 3, dtype=torch.float64), atol=1e-7, rtol=0
    )
    torch.testing.assert_close(out.image, torch.tensor([v], dtype=torch.float64), atol=1e-7, rtol=0)
    torch.testing.assert_close(out.text_weights, torch.tensor([a_q], dtype=torch.float64), atol=1e-7, rtol=0)
    torch.testing.assert_close(
        out.text, torch.tensor([expected_q_hat], dtype=torch.float64), atol=1e-7, rtol=0
    )


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
@pytest.mark.parametrize("combine", ["sum", "product", "concat"])
def test_fused_joins_the_attended_vectors(cls, combine):
    torch.manual_seed(0)
    layer = cls(D_Q, D_Q, hidden_dim=K, combine=combine).eval()  # sum/product need d_v = d_q
    g = torch.Generator().manual_seed(11)
    image, text = torch.randn(B, N, D_Q, generator=g), torch.randn(B, L, D_Q, generator=g)
    out = layer(image, None, text, None)
    expected = {
        "sum": out.image + out.text,
        "product": out.image * out.text,
        "concat": torch.cat([out.image, out.text], -1),
    }[combine]
    torch.testing.assert_close(out.fused, expected)
    assert layer.output_dim == expected.shape[-1]


@pytest.mark.parametrize("cls", LAYERS, ids=LAYER_IDS)
def test_sum_with_different_widths_is_rejected(cls):
    with pytest.raises(ValueError, match="equal image and text widths"):
        cls(D_V, D_Q, hidden_dim=K, combine="sum")


def test_alternating_coattention_with_reinforce_hard_image_context_keeps_gradients_finite():
    from vlkit.attention import HardContext, hard_attention_loss

    torch.manual_seed(0)
    layer = AlternatingCoAttention(8, 6, 16, image_context=HardContext("reinforce")).train()
    with torch.no_grad():
        layer.attend_image.score.weight.mul_(500.0)  # score gaps of hundreds: some kept weights underflow
    image, text = torch.randn(2, 5, 8), torch.randn(2, 4, 6)
    out = layer(image, None, text, None)
    assert (out.image_weights == 0).any()  # kept regions (no mask) with weight exactly 0
    loss = out.fused.sum() + hard_attention_loss(layer, torch.tensor([1.0, -1.0]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in layer.parameters() if p.grad is not None)


def test_the_affinity_weight_starts_small_and_moves_in_proportion():
    """W_b starts at std (d_q·d_v)^-1/2 and an Adam step moves it by at most lr times that scale
    (stored as affinity_weight · scale), so C = tanh(Qᵀ W_b V) is not driven to ±1 by step size."""
    torch.manual_seed(0)
    layer = ParallelCoAttention(image_dim=64, text_dim=32, hidden_dim=16)
    scale = (64 * 32) ** -0.5
    assert layer.affinity.std().item() == pytest.approx(scale, rel=0.05)
    before = layer.affinity.detach().clone()
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.01)
    image, text = torch.randn(4, 9, 64), torch.randn(4, 5, 32)
    layer(image, None, text, None).fused.square().sum().backward()
    optimizer.step()
    moved = (layer.affinity.detach() - before).abs()
    assert moved.max().item() <= 0.01 * scale * 1.001 and moved.mean().item() > 0.5 * 0.01 * scale
