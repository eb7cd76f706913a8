"""Property tests (hypothesis) over every attention module of vlkit.attention.

For random shapes and masks (including rows with nothing to attend):
- weights are non-negative, sum to 1 over unmasked positions, are exactly 0 at masked
  positions; an all-masked row gives zero weights, a zero context and no NaN;
- self-attention is permutation-equivariant; cross-attention with context = x equals
  self-attention; local-p with a window covering the sequence and a very wide Gaussian is
  global attention;
- the same hold under ``torch.autocast`` in bf16 and fp16, within stated tolerances of fp32;
- ``torch.autograd.gradcheck`` in float64 for the score functions, masked softmax and the
  local alignments.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlkit.attention import (
    AdditiveAttention,
    AdditiveScore,
    ConcatAttention,
    ConcatScore,
    DotProductAttention,
    DotProductScore,
    GaussianKernelScore,
    GeneralAttention,
    GeneralScore,
    HardAttention,
    LocalMonotonicAlignment,
    LocalPredictiveAlignment,
    LuongAttention,
    MultiHeadAttention,
    NadarayaWatsonAttention,
    ScaledDotProductAttention,
    ScaledDotProductScore,
    TransformerBlock,
    masked_softmax,
)

D = 4  # query / key / value width (2 heads of 2 for the multi-head layers)
PROPERTY_SETTINGS = settings(max_examples=20, deadline=None)


def _single(make):
    """Adapter: a (query, key, value) attention module -> (context (b, m, d), weights (b, m, n))."""

    def run(query, key, value, mask, module=None):
        module = module or make()
        out = module(query, key, value, mask)
        return out.context, out.weights

    run.make = make
    return run


def _luong(score):
    def make():
        return LuongAttention(D, score=score)

    def run(query, key, value, mask, module=None):
        out = (module or make())(query, key, mask)  # Luong attends over the source itself
        return out.context, out.weights

    run.make = make
    return run


def _multi_head(need_weights=True):
    def make():
        return MultiHeadAttention(D, num_heads=2)

    def run(query, key, value, mask, module=None):
        module = module or make()
        out = module(query, key, mask=mask, need_weights=True)
        return _attended(module, key, out.weights), out.weights

    run.make = make
    return run


# modules whose rows sum to exactly 1 over the kept keys
GLOBAL_MODULES = {
    "dot": _single(DotProductAttention),
    "scaled_dot": _single(ScaledDotProductAttention),
    "general": _single(lambda: GeneralAttention(D)),
    "additive": _single(lambda: AdditiveAttention(D, D, 5)),
    "concat": _single(lambda: ConcatAttention(D, D, 5)),
    "nadaraya_watson": _single(NadarayaWatsonAttention),
    "nadaraya_watson_parametric": _single(lambda: NadarayaWatsonAttention(D)),
    "hard_eval": _single(lambda: HardAttention(AdditiveScore(D, D, 5)).eval()),
    "luong_dot": _luong("dot"),
    "luong_general": _luong("general"),
    "luong_concat": _luong("concat"),
    "multi_head": _multi_head(),
}
LOCAL_MODULES = {
    "local_m": _single(lambda: GeneralAttention(D, alignment=LocalMonotonicAlignment(1))),
    "local_p": _single(lambda: AdditiveAttention(D, D, 5, alignment=LocalPredictiveAlignment(D, 2))),
    "multi_head_local_p": _single(lambda: _MHAContext(LocalPredictiveAlignment(D, 2))),
}


def _attended(mha, key, weights):
    """The multi-head context before the output projection, rebuilt from the weights: (b, m, d)."""
    v = mha.v_proj(key).unflatten(-1, (2, D // 2)).transpose(1, 2)  # (b, h, n, dh)
    return (weights @ v).transpose(1, 2).flatten(2)


class _MHAContext(torch.nn.Module):
    """Multi-head attention with an alignment, seen as (query, key, value, mask) -> (context, weights)."""

    def __init__(self, alignment):
        super().__init__()
        self.mha = MultiHeadAttention(D, 2, alignment=alignment)

    def forward(self, query, key, value, mask):
        out = self.mha(query, key, mask=mask, need_weights=True)
        return type("Out", (), {"context": _attended(self.mha, key, out.weights), "weights": out.weights})


@st.composite
def attention_inputs(draw, square=False):
    """Random (query, key, value, mask) with some all-masked rows."""
    b = draw(st.integers(1, 3))
    n = draw(st.integers(1, 6))
    m = n if square else draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(b, m, D, generator=g)
    key = query if square else torch.randn(b, n, D, generator=g)
    value = key
    mask = torch.rand(b, n, generator=g) < draw(st.floats(0.2, 1.0))
    if draw(st.booleans()):
        mask[0] = False  # a sequence with nothing to attend
    return query, key, value, mask


def _expand_mask(mask, weights):
    """(b, n) key mask -> the shape of the weights ((b, m, n) or (b, h, m, n))."""
    keep = mask[:, None, :] if weights.dim() == 3 else mask[:, None, None, :]
    return keep.expand_as(weights)


def weight_violations(weights, context, mask, sums_to_one=True, atol=1e-5) -> list[str]:
    """The attention-weight properties that ``weights`` / ``context`` break (empty when all hold)."""
    keep = _expand_mask(mask, weights)
    row_sum = weights.float().sum(-1)
    has_keys = keep.any(-1)
    empty = ~mask.any(-1)  # (b,)
    if sums_to_one:
        row_check = (
            "rows of kept keys do not sum to 1",
            bool(torch.all((row_sum[has_keys] - 1).abs() <= atol)),
        )
    else:
        row_check = ("a row sums to more than 1", bool(torch.all(row_sum <= 1 + atol)))
    checks = dict(
        [
            (
                "non-finite weights or context",
                bool(torch.isfinite(weights).all() and torch.isfinite(context).all()),
            ),
            ("negative weights", bool(torch.all(weights >= 0))),
            ("non-zero weight at a masked key", bool(torch.all(weights[~keep] == 0))),
            row_check,
            ("non-zero weights in an all-masked row", bool(torch.all(row_sum[~has_keys] == 0))),
            ("non-zero context for a sequence with nothing to attend", bool(torch.all(context[empty] == 0))),
        ]
    )
    return [name for name, holds in checks.items() if not holds]


@pytest.mark.parametrize("name", list(GLOBAL_MODULES))
@PROPERTY_SETTINGS
@given(inputs=attention_inputs())
def test_weights_are_a_distribution_over_unmasked_keys(name, inputs):
    torch.manual_seed(0)
    context, weights = GLOBAL_MODULES[name](*inputs)
    assert weight_violations(weights, context, inputs[3]) == []


@pytest.mark.parametrize("name", list(LOCAL_MODULES))
@PROPERTY_SETTINGS
@given(inputs=attention_inputs())
def test_local_weights_are_non_negative_zero_where_masked_and_at_most_one(name, inputs):
    torch.manual_seed(0)
    context, weights = LOCAL_MODULES[name](*inputs)
    assert weight_violations(weights, context, inputs[3], sums_to_one=False) == []


SELF_ATTENTION = ["dot", "scaled_dot", "general", "additive", "concat", "nadaraya_watson", "luong_general"]


@pytest.mark.parametrize("name", SELF_ATTENTION + ["multi_head"])
@PROPERTY_SETTINGS
@given(inputs=attention_inputs(square=True), perm_seed=st.integers(0, 1000))
def test_self_attention_is_permutation_equivariant(name, inputs, perm_seed):
    x, _, _, mask = inputs
    run = GLOBAL_MODULES[name]
    torch.manual_seed(0)
    module = run.make()
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(perm_seed))
    context, weights = run(x, x, x, mask, module)
    context_p, weights_p = run(x[:, perm], x[:, perm], x[:, perm], mask[:, perm], module)
    torch.testing.assert_close(context_p, context[:, perm], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights_p, weights[..., perm, :][..., perm], atol=1e-5, rtol=1e-5)


@PROPERTY_SETTINGS
@given(inputs=attention_inputs(square=True), perm_seed=st.integers(0, 1000))
def test_transformer_block_is_permutation_equivariant(inputs, perm_seed):
    x, _, _, mask = inputs
    torch.manual_seed(0)
    block = TransformerBlock(D, num_heads=2).eval()
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(perm_seed))
    out = block(x, mask).output
    torch.testing.assert_close(block(x[:, perm], mask[:, perm]).output, out[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("need_weights", [False, True])
@PROPERTY_SETTINGS
@given(inputs=attention_inputs(square=True))
def test_cross_attention_with_context_x_equals_self_attention(need_weights, inputs):
    x, _, _, mask = inputs
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, num_heads=2)
    self_out = mha(x, mask=mask, need_weights=need_weights)
    cross_out = mha(x, x.clone(), mask=mask, need_weights=need_weights)
    torch.testing.assert_close(cross_out.output, self_out.output)


@PROPERTY_SETTINGS
@given(inputs=attention_inputs())
def test_local_p_with_a_whole_sequence_window_and_wide_gaussian_is_global(inputs):
    query, key, value, mask = inputs
    torch.manual_seed(0)
    local = AdditiveAttention(D, D, 5, alignment=LocalPredictiveAlignment(D, window=100_000))
    glob = AdditiveAttention(D, D, 5)
    glob.load_state_dict(local.state_dict(), strict=False)
    a, b = local(query, key, value, mask), glob(query, key, value, mask)
    torch.testing.assert_close(a.weights, b.weights, atol=1e-6, rtol=0)
    torch.testing.assert_close(a.context, b.context, atol=1e-5, rtol=0)


# ---- mixed precision ------------------------------------------------------------------------
# Stated tolerances against fp32 (inputs ~ N(0, 1), d = 4): weights within 0.03 (bf16, 8-bit
# mantissa) / 0.005 (fp16); contexts within 0.1 / 0.02.
AUTOCAST = [(torch.bfloat16, 0.03, 0.1), (torch.float16, 0.005, 0.02)]


@pytest.mark.parametrize("dtype, w_tol, c_tol", AUTOCAST, ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", list(GLOBAL_MODULES) + list(LOCAL_MODULES))
@settings(max_examples=8, deadline=None)
@given(inputs=attention_inputs())
def test_autocast_no_nan_and_close_to_fp32(dtype, w_tol, c_tol, name, inputs):
    run = {**GLOBAL_MODULES, **LOCAL_MODULES}[name]
    torch.manual_seed(0)
    module = run.make()
    context32, weights32 = run(*inputs, module=module)
    with torch.autocast("cpu", dtype=dtype):
        context, weights = run(*inputs, module=module)
    assert (
        weight_violations(weights, context, inputs[3], sums_to_one=name in GLOBAL_MODULES, atol=w_tol) == []
    )
    torch.testing.assert_close(weights.float(), weights32, atol=w_tol, rtol=0)
    if name == "hard_eval":
        # a discrete choice: near-ties may flip under low precision, so check that the
        # context is the value at the low-precision argmax instead of comparing with fp32
        _query, _key, value, mask = inputs
        picked = (
            value[torch.arange(value.shape[0])[:, None], weights.argmax(-1)] * mask.any(-1)[:, None, None]
        )
        torch.testing.assert_close(context.float(), picked, atol=c_tol, rtol=c_tol)
    else:
        torch.testing.assert_close(context.float(), context32, atol=c_tol, rtol=c_tol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_fused_multi_head_under_autocast_all_masked_rows(dtype):
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, 2)
    x = torch.randn(2, 3, D)
    mask = torch.tensor([[False, False, False], [True, True, False]])
    ref = mha(x, mask=mask).output
    with torch.autocast("cpu", dtype=dtype):
        out = mha(x, mask=mask).output
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=0.1)
    torch.testing.assert_close(out[0].float(), mha.out_proj.bias.expand(3, D), atol=0.01, rtol=0)


# ---- gradcheck in float64 -------------------------------------------------------------------
SCORES = {
    "dot": DotProductScore,
    "scaled_dot": ScaledDotProductScore,
    "general": lambda: GeneralScore(3, 4),
    "additive": lambda: AdditiveScore(3, 4, 5),
    "concat": lambda: ConcatScore(3, 4, 5),
    "gaussian": GaussianKernelScore,
    "gaussian_parametric": lambda: GaussianKernelScore(3),
}


@pytest.mark.parametrize("name", list(SCORES))
def test_score_gradcheck_float64(name):
    torch.manual_seed(0)
    score = SCORES[name]().double()
    d_k = 3 if name in ("dot", "scaled_dot", "gaussian", "gaussian_parametric") else 4
    query = torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True)
    key = torch.randn(2, 4, d_k, dtype=torch.float64, requires_grad=True)
    params = tuple(score.parameters())

    def fn(q, k, *ps):
        with torch.nn.utils.stateless._reparametrize_module(
            score, dict(zip(dict(score.named_parameters()), ps))
        ):
            return score(q, k)

    assert torch.autograd.gradcheck(fn, (query, key, *[p.detach().requires_grad_() for p in params]))


def test_masked_softmax_gradcheck_float64():
    torch.manual_seed(0)
    scores = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(3, 1, 5) > 0.4
    mask[0] = False  # an all-masked row: zero weights, zero gradient
    mask[1, 0, 0] = True
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, mask), (scores,))
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s), (scores,))


def test_local_alignments_gradcheck_float64():
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    query = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 1, 6, dtype=torch.bool)
    mask[1, 0, 4:] = False
    local_m = LocalMonotonicAlignment(2, gaussian=True)
    assert torch.autograd.gradcheck(lambda s: local_m(s, mask), (scores,))
    local_p = LocalPredictiveAlignment(4, window=2).double()
    assert torch.autograd.gradcheck(lambda s, q: local_p(s, mask, q).double(), (scores, query))
