"""Every layer under ``torch.compile`` (one graph, the eager outputs) and under bf16 autocast.

``torch.compile(module, fullgraph=True)`` turns any graph break into an error, so a passing
compile proves that the layer is one graph. The compiled outputs, weights included, are
compared with eager ones, and so are the parameter gradients of the same compiled graph.
Backend choice (a CPU with 2 cores must run this file in a minute or two):

- ``aot_eager`` for every layer: Dynamo captures the whole graph (where graph breaks are
  found) and AOTAutograd traces forward and backward, but no C++ is generated, so a layer
  compiles in 0.1 to 3 s (Dynamo's tracing is most of it);
- ``inductor`` (the default backend, which generates and compiles C++) for a representative
  few: the explicit attention path (:func:`masked_softmax`, forward and backward), the fused
  SDPA path with a row that has nothing to attend, a convolution block (CBAM). Its first
  compile alone costs ~20 s.

Two layers hold an ``nn.LSTM`` run over packed sequences and cannot be one graph: Dynamo
does not trace RNN modules (``torch._dynamo.config.allow_rnn``, off by default and
experimental, fails in AOTAutograd on this torch) and ``pack_padded_sequence`` has
data-dependent sizes. :class:`LSTMTextEncoder` and :class:`HierarchicalCoAttention` are
checked to break only inside :func:`vlkit.text.packed_lstm` and to match eager when compiled
with graph breaks.

bf16: every layer runs under ``torch.autocast("cpu", dtype=torch.bfloat16)``; outputs must
be finite, shaped as in float32 and close to float32; attention weights still sum to 1 over
kept positions and stay exactly 0 at masked ones. A representative few are also compiled
under autocast.

Shape legend: ``b`` batch, ``m`` queries, ``n`` keys / image regions, ``l`` tokens,
``d``/``dk`` widths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
import torch._dynamo
from torch import Tensor, nn

from vlkit.attention import (
    SCORE_FUNCTIONS,
    AdditiveAttention,
    Attention,
    BahdanauDecoderStep,
    ConcatAttention,
    DotProductAttention,
    GeneralAttention,
    HardAttention,
    HardContext,
    LocalMonotonicAlignment,
    LocalPredictiveAlignment,
    LuongAttention,
    MultiHeadAttention,
    NadarayaWatsonAttention,
    ScaledDotProductAttention,
    SinusoidalPositionalEncoding,
    TransformerBlock,
    TransformerDecoderBlock,
    create_score,
    masked_softmax,
)
from vlkit.fusion import FUSIONS, create_fusion
from vlkit.text import LSTMTextEncoder, TransformerTextEncoder, WordEmbeddingEncoder
from vlkit.vision import CBAM, ChannelAttention, SpatialAttention, SpatialTransformer

B, M, N, L, D, DK = 3, 3, 5, 4, 8, 6
FP32_TOL = {"atol": 1e-5, "rtol": 1e-4}
BF16_SUM_TOL = 1e-2  # |Σ weights − 1| over kept positions
BF16_REL_TOL = 5e-2  # max |bf16 − fp32| relative to max(1, max |fp32|)
VOCAB = 10


def _lengths_mask(lengths: list[int], total: int) -> Tensor:
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


# key / image masks: a full row, a padded row and an empty row (nothing to attend)
KEY_MASK = _lengths_mask([5, 3, 0], N)  # (b, n)
TEXT_MASK = _lengths_mask([4, 2, 0], L)  # (b, l)
IMAGE_MASK = _lengths_mask([5, 3, 1], N)  # (b, n)
TOKEN_IDS = torch.tensor([[3, 4, 5, 6], [2, 9, 0, 0], [0, 0, 0, 0]])  # (b, l), right-padded


def _randn(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


QUERY, KEY, KEY_DK = _randn(B, M, D, seed=1), _randn(B, N, D, seed=2), _randn(B, N, DK, seed=3)
IMAGE, TEXT, TEXT_D = _randn(B, N, D, seed=4), _randn(B, L, DK, seed=5), _randn(B, L, D, seed=6)
FEATURE_MAP = _randn(2, D, 6, 6, seed=7)  # (b, C, H, W)


@dataclass
class Case:
    """One layer, its inputs, and where its attention weights are.

    Attributes:
        build: makes the layer (a module, or a function such as ``masked_softmax``).
        inputs: positional arguments of the forward call.
        keep: output path -> bool mask broadcastable to those weights, True where a weight
            may be non-zero. Rows with a kept position sum to 1, the others to 0.
        partial_sums: output paths whose rows sum to at most 1 (local-p's Gaussian factor).
    """

    build: Callable[[], Callable]
    inputs: tuple
    keep: dict[str, Tensor] = field(default_factory=dict)
    partial_sums: tuple[str, ...] = ()


def _seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """Build with fixed parameters, in eval mode (no dropout, deterministic hard attention)."""

    def build() -> nn.Module:
        torch.manual_seed(0)
        return factory().eval()

    return build


def _perturbed_stn(transform: str) -> nn.Module:
    stn = SpatialTransformer(D, transform, output_size=(4, 5))
    nn.init.normal_(stn.regressor[-1].weight, std=0.1)  # not the identity, so sampling matters
    return stn


KEYS_3D = KEY_MASK[:, None, :]  # (b, 1, n): weights (b, m, n)
HEADS_3D = KEY_MASK[:, None, None, :]  # (b, 1, 1, n): weights (b, h, m, n)
CAUSAL = torch.ones(L, L, dtype=torch.bool).tril()


def _score_cases() -> dict[str, Case]:
    cases = {}
    for name in SCORE_FUNCTIONS:
        same_width = name in ("dot", "scaled_dot", "gaussian")
        key = KEY if same_width else KEY_DK
        cases[f"score_{name}"] = Case(
            _seeded(lambda name=name, key=key: create_score(name, D, key.shape[-1], 7)), (QUERY, key)
        )
    cases["score_gaussian_nonparametric"] = Case(_seeded(lambda: create_score("gaussian")), (QUERY, KEY))
    return cases


def _attention_cases() -> dict[str, Case]:
    weights = {"weights": KEYS_3D}
    args, args_dk = (QUERY, KEY, KEY, KEY_MASK), (QUERY, KEY_DK, KEY_DK, KEY_MASK)
    return {
        "masked_softmax": Case(lambda: masked_softmax, (_randn(B, M, N, seed=8), KEYS_3D), {"": KEYS_3D}),
        "attention_score": Case(
            _seeded(lambda: Attention(create_score("additive", D, DK, 7))), args_dk, weights
        ),
        "dot_product_attention": Case(_seeded(DotProductAttention), args, weights),
        "scaled_dot_product_attention": Case(_seeded(ScaledDotProductAttention), args, weights),
        "general_attention": Case(_seeded(lambda: GeneralAttention(D, DK)), args_dk, weights),
        "additive_attention": Case(_seeded(lambda: AdditiveAttention(D, DK, 7)), args_dk, weights),
        "concat_attention": Case(_seeded(lambda: ConcatAttention(D, DK, 7)), args_dk, weights),
        "nadaraya_watson_attention": Case(_seeded(lambda: NadarayaWatsonAttention(D)), args, weights),
        "local_m_attention": Case(
            _seeded(lambda: DotProductAttention(alignment=LocalMonotonicAlignment(1))),
            (*args, torch.tensor([0, 2, 4])),
            # the window |s − p_t| <= 1 around p_t = 0, 2, 4
            {"weights": KEYS_3D & ((torch.arange(N)[None, :] - torch.tensor([[0], [2], [4]])).abs() <= 1)},
        ),
        "local_p_attention": Case(
            _seeded(lambda: GeneralAttention(D, DK, alignment=LocalPredictiveAlignment(D, 2))),
            args_dk,
            weights,
            partial_sums=("weights",),
        ),
        "luong_attention": Case(_seeded(lambda: LuongAttention(D, DK)), (QUERY, KEY_DK, KEY_MASK), weights),
        "luong_attention_concat": Case(
            _seeded(lambda: LuongAttention(D, DK, score="concat", output_dim=5)),
            (QUERY, KEY_DK, KEY_MASK),
            weights,
        ),
        "bahdanau_decoder_step": Case(
            _seeded(lambda: BahdanauDecoderStep(4, D, DK)),
            (_randn(B, 4, seed=9), KEY_DK, KEY_MASK),
            {"weights": KEY_MASK},
        ),
        "hard_attention": Case(
            _seeded(lambda: HardAttention(create_score("additive", D, DK, 7))), args_dk, weights
        ),
        "hard_attention_expectation": Case(
            _seeded(lambda: HardAttention(create_score("dot"), eval_mode="expectation")), args, weights
        ),
        "hard_context": Case(
            _seeded(HardContext), (masked_softmax(_randn(B, M, N, seed=10), KEYS_3D), KEY_DK)
        ),
        "positional_encoding": Case(_seeded(lambda: SinusoidalPositionalEncoding(D, 16)), (KEY,)),
    }


def _multihead_cases() -> dict[str, Case]:
    tokens, context = TEXT_D, _randn(B, N, DK, seed=11)
    return {
        "multihead_self": Case(_seeded(lambda: MultiHeadAttention(D, 2)), (KEY, None, KEY_MASK)),
        "multihead_self_weights": Case(
            _seeded(lambda: MultiHeadAttention(D, 2)),
            (KEY, None, KEY_MASK, False, True),
            {"weights": HEADS_3D},
        ),
        "multihead_cross": Case(_seeded(lambda: MultiHeadAttention(D, 2, DK)), (QUERY, context, KEY_MASK)),
        "multihead_cross_weights": Case(
            _seeded(lambda: MultiHeadAttention(D, 2, DK)),
            (QUERY, context, KEY_MASK, False, True),
            {"weights": HEADS_3D},
        ),
        "multihead_local_m": Case(
            _seeded(lambda: MultiHeadAttention(D, 2, alignment=LocalMonotonicAlignment(2))),
            (KEY, None, KEY_MASK, False, True),
            {"weights": HEADS_3D & ((torch.arange(N)[:, None] - torch.arange(N)[None, :]).abs() <= 2)},
        ),
        "transformer_block": Case(_seeded(lambda: TransformerBlock(D, 2)), (KEY, KEY_MASK)),
        "transformer_decoder_block": Case(
            _seeded(lambda: TransformerDecoderBlock(D, 2, DK)), (tokens, context, KEY_MASK, TEXT_MASK)
        ),
        "transformer_decoder_block_weights": Case(
            _seeded(lambda: TransformerDecoderBlock(D, 2, DK)),
            (tokens, context, KEY_MASK, TEXT_MASK, True),
            {"self_weights": TEXT_MASK[:, None, None, :] & CAUSAL, "cross_weights": HEADS_3D},
        ),
    }


#: Small settings per fusion (the defaults are paper-sized).
FUSION_SETTINGS = {
    "cross_modal_transformer": {"depth": 1, "num_heads": 2},
    "mcan": {"depth": 1, "num_heads": 2},
    "mfb": {"factor": 2, "attention_dim": 8},
    "mfh": {"factor": 2, "attention_dim": 8},
}


def _fusion_keep(name: str) -> dict[str, Tensor]:
    """Where each fusion's weights may be non-zero (image regions ``(b, n)``, tokens ``(b, l)``)."""
    image, text = IMAGE_MASK, TEXT_MASK
    pooled = {"image_weights": image, "text_weights": text}
    glimpses = {"maps.image_glimpses": image[:, None, :], "maps.text_glimpses": text[:, None, :]}
    keep = {
        "parallel_coattention": pooled,
        "alternating_coattention": {**pooled, "maps.summary": text},
        # image_to_text: regions (queries) over tokens; padded regions get zero rows
        "cross_modal_attention": {
            "text_weights": text,
            "maps.image_to_text": image[:, :, None] & text[:, None, :],
        },
        "mcan": pooled,
        "mfb": {**pooled, **glimpses},
        "mfh": {**pooled, **glimpses},
    }
    return keep.get(name, {})  # the others return no attention weights


def _fusion_cases() -> dict[str, Case]:
    cases = {}
    for name in FUSIONS:
        if name == "hierarchical_coattention":
            continue  # an LSTM: see LSTM_CASES
        settings = {"hidden_dim": 8, **FUSION_SETTINGS.get(name, {})}
        cases[f"fusion_{name}"] = Case(
            _seeded(lambda name=name, settings=settings: create_fusion(name, D, DK, **settings)),
            (IMAGE, IMAGE_MASK, TEXT, TEXT_MASK),
            _fusion_keep(name),
        )
    cases["fusion_cross_modal_transformer_weights"] = Case(
        _seeded(
            lambda: create_fusion(
                "cross_modal_transformer", D, DK, hidden_dim=8, depth=1, num_heads=2, need_weights=True
            )
        ),
        (IMAGE, IMAGE_MASK, TEXT, TEXT_MASK),
        {
            "maps.image_to_text": TEXT_MASK[:, None, None, :],
            "maps.text_to_image": IMAGE_MASK[:, None, None, :],
        },
    )
    cases["fusion_parallel_coattention_hard"] = Case(
        _seeded(
            lambda: create_fusion("parallel_coattention", D, DK, hidden_dim=8, image_context=HardContext())
        ),
        (IMAGE, IMAGE_MASK, TEXT, TEXT_MASK),
        _fusion_keep("parallel_coattention"),
    )
    return cases


def _vision_text_cases() -> dict[str, Case]:
    text_keep = {"weights.0": TEXT_MASK[:, None, None, :], "weights.1": TEXT_MASK[:, None, None, :]}
    return {
        "cbam": Case(_seeded(lambda: CBAM(D, reduction=2, kernel_size=3)), (FEATURE_MAP,)),
        "channel_attention": Case(_seeded(lambda: ChannelAttention(D, reduction=2)), (FEATURE_MAP,)),
        "spatial_attention": Case(_seeded(SpatialAttention), (FEATURE_MAP,)),
        "spatial_transformer": Case(_seeded(lambda: _perturbed_stn("affine")), (FEATURE_MAP,)),
        "spatial_transformer_attention": Case(_seeded(lambda: _perturbed_stn("attention")), (FEATURE_MAP,)),
        "word_embedding_encoder": Case(_seeded(lambda: WordEmbeddingEncoder(VOCAB, D)), (TOKEN_IDS,)),
        "transformer_text_encoder": Case(
            _seeded(lambda: TransformerTextEncoder(VOCAB, D, depth=2, num_heads=2)),
            (TOKEN_IDS, None, True),
            text_keep,
        ),
        "transformer_text_encoder_learned": Case(
            _seeded(lambda: TransformerTextEncoder(VOCAB, D, depth=1, num_heads=2, positions="learned")),
            (TOKEN_IDS,),
        ),
    }


#: Layers that compile to one graph.
CASES: dict[str, Case] = {
    **_score_cases(),
    **_attention_cases(),
    **_multihead_cases(),
    **_fusion_cases(),
    **_vision_text_cases(),
}

#: Layers with a packed LSTM: compiled with graph breaks (inside packed_lstm only).
LSTM_CASES: dict[str, Case] = {
    "lstm_text_encoder": Case(_seeded(lambda: LSTMTextEncoder(VOCAB, D, embed_dim=6)), (TOKEN_IDS,)),
    "fusion_hierarchical_coattention": Case(
        _seeded(lambda: create_fusion("hierarchical_coattention", D, D, hidden_dim=8)),
        (IMAGE, IMAGE_MASK, TEXT_D, TEXT_MASK),
        {
            "image_weights": IMAGE_MASK,
            "text_weights": TEXT_MASK,
            **{
                f"maps.{level}_{side}": mask
                for level in ("word", "phrase", "question")
                for side, mask in (("image", IMAGE_MASK), ("text", TEXT_MASK))
            },
        },
    ),
}

#: Compiled with inductor too (forward, and backward where True).
INDUCTOR_CASES = {
    "multihead_self_weights": True,  # the explicit path: scores, masked_softmax, weighted sum
    "multihead_cross": False,  # the fused SDPA path, with a row that has nothing to attend
    "cbam": False,
}

#: Also compiled under bf16 autocast (a second graph per layer).
AUTOCAST_CASES = (
    "additive_attention",
    "local_p_attention",  # switches autocast off inside the graph
    "hard_attention",
    "multihead_self",
    "transformer_decoder_block_weights",
    "fusion_mcan",
    "fusion_mfh",
    "cbam",
    "spatial_transformer",
    "transformer_text_encoder",
)


# ---------------------------------------------------------------------------------------
# helpers


def flatten(output, prefix: str = "") -> dict[str, Tensor]:
    """Every tensor of a (nested) output by its path: NamedTuple fields, list indices, dict keys."""
    if isinstance(output, Tensor):
        return {prefix: output}
    if isinstance(output, tuple) and hasattr(output, "_fields"):
        items = zip(output._fields, output)
    elif isinstance(output, (tuple, list)):
        items = ((str(i), x) for i, x in enumerate(output))
    elif isinstance(output, dict):
        items = output.items()
    else:  # None
        return {}
    flat = {}
    for key, value in items:
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def assert_same_outputs(actual, expected, **tolerance) -> None:
    actual, expected = flatten(actual), flatten(expected)
    assert actual.keys() == expected.keys()
    for path in expected:
        a, e = actual[path], expected[path]
        assert a.dtype == e.dtype and a.shape == e.shape, path
        if e.is_floating_point():
            torch.testing.assert_close(a, e, **tolerance, msg=lambda msg, path=path: f"{path}: {msg}")
        else:
            assert torch.equal(a, e), path


def assert_close_at_bf16(actual: Tensor, expected: Tensor, path: str) -> None:
    """Finite and within ``BF16_REL_TOL`` of ``expected``, relative to its largest magnitude (at least 1)."""
    assert torch.isfinite(actual).all(), f"{path}: not finite"
    error = (actual.float() - expected.float()).abs().max()
    assert error <= BF16_REL_TOL * max(1.0, expected.abs().max().item()), f"{path}: error {error:.3g}"


def loss_of(output) -> Tensor:
    """A scalar that depends on every floating output (for the backward checks)."""
    return sum(t.float().sin().sum() for t in flatten(output).values() if t.is_floating_point())


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles its own layer; resetting keeps Dynamo's per-code cache from filling up
    (many layers share one forward, e.g. ``Attention.forward``) and isolates the tests."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# ---------------------------------------------------------------------------------------
# torch.compile


@pytest.mark.parametrize("name", list(CASES))
def test_compiles_to_one_graph_and_matches_eager(name):
    case = CASES[name]
    layer = case.build()
    expected = layer(*case.inputs)
    actual = torch.compile(layer, fullgraph=True, backend="aot_eager")(*case.inputs)
    assert_same_outputs(actual, expected, **FP32_TOL)
    if not isinstance(layer, nn.Module) or not any(p.requires_grad for p in layer.parameters()):
        return
    # the same graph's backward: every parameter gets the eager gradient (or none in both)
    params = dict(layer.named_parameters())
    grads = torch.autograd.grad(loss_of(expected), list(params.values()), allow_unused=True)
    compiled_grads = torch.autograd.grad(loss_of(actual), list(params.values()), allow_unused=True)
    assert any(grad is not None for grad in grads)
    for key, grad, compiled_grad in zip(params, grads, compiled_grads):
        if grad is None:
            assert compiled_grad is None, key
        else:
            torch.testing.assert_close(
                compiled_grad, grad, **FP32_TOL, msg=lambda msg, key=key: f"{key}: {msg}"
            )


@pytest.mark.parametrize("name", AUTOCAST_CASES)
def test_compiles_to_one_graph_under_bf16_autocast(name):
    case = CASES[name]
    layer = case.build()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected, actual = flatten(layer(*case.inputs)), flatten(compiled(*case.inputs))
    assert actual.keys() == expected.keys()
    for path, value in expected.items():
        assert actual[path].dtype == value.dtype and actual[path].shape == value.shape, path
        if value.is_floating_point():
            assert_close_at_bf16(actual[path], value, path)
        else:
            assert torch.equal(actual[path], value), path


@pytest.mark.parametrize("name", list(INDUCTOR_CASES))
def test_inductor_matches_eager(name):
    case, backward = CASES[name], INDUCTOR_CASES[name]
    layer = case.build()
    compiled = torch.compile(layer, fullgraph=True)  # the default backend: inductor, C++ on CPU
    expected = layer(*case.inputs)
    actual = compiled(*case.inputs)
    assert_same_outputs(actual, expected, **FP32_TOL)
    if backward:
        grads = torch.autograd.grad(loss_of(expected), list(layer.parameters()))
        compiled_grads = torch.autograd.grad(loss_of(actual), list(layer.parameters()))
        for grad, compiled_grad in zip(grads, compiled_grads):
            torch.testing.assert_close(compiled_grad, grad, **FP32_TOL)


def _breaks_in_packed_lstm(reason) -> bool:
    """Whether a dynamo graph break is inside ``packed_lstm``; torch 2.14 also reports the break
    once more at the line that calls it (``step_unsupported``: the caller's frame cannot go on)."""
    if any(frame.name == "packed_lstm" for frame in reason.user_stack):
        return True
    caller = reason.user_stack[-1] if reason.user_stack else None
    return (
        reason.reason == "step_unsupported" and caller is not None and "packed_lstm(" in (caller.line or "")
    )


@pytest.mark.parametrize("name", list(LSTM_CASES))
def test_lstm_layers_break_only_in_packed_lstm_and_match_eager(name):
    case = LSTM_CASES[name]
    layer = case.build()
    explanation = torch._dynamo.explain(layer)(*case.inputs)
    assert explanation.graph_break_count > 0  # if torch learns to trace packed LSTMs, move to CASES
    for reason in explanation.break_reasons:
        assert _breaks_in_packed_lstm(reason), reason.reason
    torch._dynamo.reset()
    with torch.no_grad():
        compiled = torch.compile(layer, backend="aot_eager")
        assert_same_outputs(compiled(*case.inputs), layer(*case.inputs), **FP32_TOL)


@pytest.mark.parametrize("encoder", ["word_embedding_encoder", "transformer_text_encoder_learned"])
def test_compiled_text_encoders_still_reject_ids_outside_the_vocabulary(encoder):
    layer = CASES[encoder].build()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    compiled(TOKEN_IDS)
    with pytest.raises(RuntimeError, match=rf"token ids must lie in \[0, {VOCAB}\)"):
        compiled(TOKEN_IDS.clamp(max=VOCAB - 1) + 1)  # the same graph, now with id VOCAB
    with pytest.raises(ValueError, match=rf"token ids must lie in \[0, {VOCAB}\), got range \[1, {VOCAB}\]"):
        layer(TOKEN_IDS.clamp(max=VOCAB - 1) + 1)  # eager keeps its message with the range found


# ---------------------------------------------------------------------------------------
# bf16 autocast


@pytest.mark.parametrize("name", [*CASES, *LSTM_CASES])
def test_bf16_autocast_is_finite_normalised_and_close_to_float32(name):
    case = CASES.get(name) or LSTM_CASES[name]
    layer = case.build()
    with torch.no_grad():
        reference = flatten(layer(*case.inputs))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = flatten(layer(*case.inputs))
    assert output.keys() == reference.keys()
    for path, ref in reference.items():
        out = output[path]
        assert out.shape == ref.shape, path
        if ref.is_floating_point():
            assert_close_at_bf16(out, ref, path)
        else:
            assert torch.equal(out, ref), path  # masks and hard-attention indices
    assert {path for path in output if "weights" in path} <= case.keep.keys()  # every weight is checked
    for path, keep in case.keep.items():
        weights = output[path].float()
        keep = keep.expand_as(weights)
        assert (weights[~keep] == 0).all(), f"{path}: weight at a masked position"
        sums, expected = weights.sum(-1), keep.any(-1).float()
        if path in case.partial_sums:
            assert (sums <= 1 + BF16_SUM_TOL).all() and (sums[expected == 0] == 0).all(), path
        else:
            torch.testing.assert_close(sums, expected, atol=BF16_SUM_TOL, rtol=0, msg=path)
