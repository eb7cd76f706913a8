"""What the benchmark runs: sizes, inputs, the layers (:data:`CASES`) and their references.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d`` width. The references are the
plain equations of :mod:`vlkit.testing` (and torch's ``MultiheadAttention``, timm's
``CbamModule``) with a vlkit layer's weights; :func:`check_same_output` checks each pair equal
before it is timed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from vlkit.attention import (
    AdditiveAttention,
    ConcatAttention,
    DotProductAttention,
    GeneralAttention,
    HardAttention,
    MultiHeadAttention,
    ScaledDotProductAttention,
    ScaledDotProductScore,
)
from vlkit.fusion import FUSIONS, MFB, create_fusion
from vlkit.testing import (
    PlainCrossModalAttention,
    PlainMFB,
    PlainMFBCoAttention,
    PlainParallelCoAttention,
    timm_cbam_like,
    torch_mha_like,
)
from vlkit.vision import CBAM, ChannelAttention, SpatialAttention, SpatialTransformer

NUM_HEADS = 8  # MultiHeadAttention heads at every size (width 512: 64 per head)
CHECK_TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}  # outputs of a vlkit layer and its reference


@dataclass(frozen=True)
class Size:
    """One benchmark size (shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d`` width)."""

    name: str
    batch: int  # b
    regions: int  # n; a square number, the vision layers get an (isqrt(n), isqrt(n)) map
    tokens: int  # l, the padded text length
    width: int  # d, the width of regions, tokens and channels


SIZES = (Size("vqa", 64, 196, 14, 512), Size("captioning", 32, 196, 20, 512))
QUICK_SIZES = (Size("quick", 2, 16, 5, 32),)
SCALING_BATCH = 16
SCALING_REGIONS = (49, 196, 784, 3136)  # 7², 14², 28², 56² regions at 14 tokens
SCALING_TOKENS = (8, 16, 32, 64, 128)  # at 196 regions
QUICK_SCALING = {"batch": 2, "width": 32, "regions": (4, 9, 16), "tokens": (2, 4, 8), "fixed": (9, 4)}


@dataclass
class Inputs:
    """The tensors every case is called on; float tensors require gradients."""

    size: Size
    image: Tensor  # (b, n, d) region features
    image_mask: Tensor  # (b, n) bool, all True (grid regions are never padded)
    text: Tensor  # (b, l, d) token features
    text_mask: Tensor  # (b, l) bool, right-padded, True = token
    question: Tensor  # (b, 1, d) one vector per question (the MFB block's y)
    feature_map: Tensor | None  # (b, d, H, W) with H = W = isqrt(n), None if n is not square


def make_inputs(size: Size, device: torch.device, seed: int = 0) -> Inputs:
    """Random inputs of ``size``: unit-normal features, text lengths uniform in ``[l/3, l]`` (first row l, last l/3)."""
    g = torch.Generator().manual_seed(seed)
    b, n, l, d = size.batch, size.regions, size.tokens, size.width
    shortest = max(1, l // 3)
    lengths = torch.randint(shortest, l + 1, (b,), generator=g)
    lengths[0], lengths[-1] = l, shortest  # the longest and the shortest question in every batch
    side = math.isqrt(n)

    def leaf(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g).to(device).requires_grad_()

    return Inputs(
        size=size,
        image=leaf(b, n, d),
        image_mask=torch.ones(b, n, dtype=torch.bool, device=device),
        text=leaf(b, l, d),
        text_mask=(torch.arange(l)[None, :] < lengths[:, None]).to(device),
        question=leaf(b, 1, d),
        feature_map=leaf(b, d, side, side) if side * side == n else None,
    )


@dataclass
class Workload:
    """One module, the call that runs it on fixed inputs, and the inputs that get gradients."""

    module: nn.Module
    forward: Callable[[Callable[..., Any]], Any]  # (module or its compiled form) -> output
    inputs: tuple[Tensor, ...]


def primary(output: Any) -> Tensor:
    """The tensor a benchmark backpropagates from: the output itself or its first field."""
    return output if isinstance(output, Tensor) else output[0]


def _fusion_call(x: Inputs) -> Callable[[Callable[..., Any]], Any]:
    return lambda m: m(x.image, x.image_mask, x.text, x.text_mask)


def _fusion(name: str, x: Inputs) -> Workload:
    d = x.size.width
    return Workload(create_fusion(name, d, d, hidden_dim=d, dropout=0.0), _fusion_call(x), (x.image, x.text))


def _regions_over_tokens(module: nn.Module, x: Inputs) -> Workload:
    """Single-head attention: regions (queries) attend over tokens (keys = values), text mask."""
    return Workload(module, lambda m: m(x.image, x.text, x.text, x.text_mask), (x.image, x.text))


def _mha_self(x: Inputs) -> Workload:
    module = MultiHeadAttention(x.size.width, NUM_HEADS)
    return Workload(module, lambda m: m(x.text, mask=x.text_mask), (x.text,))


def _mha_cross(x: Inputs) -> Workload:
    module = MultiHeadAttention(x.size.width, NUM_HEADS)
    return Workload(module, lambda m: m(x.text, x.image, mask=x.image_mask), (x.text, x.image))


def _vision(module: nn.Module, x: Inputs) -> Workload:
    if x.feature_map is None:
        raise ValueError(f"vision layers need a square number of regions, got {x.size.regions}")
    return Workload(module, lambda m: m(x.feature_map), (x.feature_map,))


def _mfb_block(x: Inputs) -> Workload:
    d = x.size.width
    return Workload(
        MFB(d, d, d, factor=5, dropout=0.0), lambda m: m(x.image, x.question), (x.image, x.question)
    )


class Case(NamedTuple):
    """A layer of the benchmark: its group, what it is called on, and how to build it."""

    group: str
    description: str
    build: Callable[[Inputs], Workload]


_REGIONS_OVER_TOKENS = "regions (b, n, d) attend over tokens (b, l, d), text mask"
_FEATURE_MAP = "feature map (b, d, √n, √n)"
#: layer name -> Case; every layer of the layers section, in table order.
CASES: dict[str, Case] = {
    "mha_self": Case(
        "attention", f"MultiHeadAttention(d, {NUM_HEADS}), tokens over tokens, text mask", _mha_self
    ),
    "mha_cross": Case(
        "attention", f"MultiHeadAttention(d, {NUM_HEADS}), tokens over regions, region mask", _mha_cross
    ),
    "scaled_dot_product_attention": Case(
        "attention",
        f"ScaledDotProductAttention(): {_REGIONS_OVER_TOKENS}",
        lambda x: _regions_over_tokens(ScaledDotProductAttention(), x),
    ),
    "dot_product_attention": Case(
        "attention",
        f"DotProductAttention(): {_REGIONS_OVER_TOKENS}",
        lambda x: _regions_over_tokens(DotProductAttention(), x),
    ),
    "general_attention": Case(
        "attention",
        f"GeneralAttention(d, d): {_REGIONS_OVER_TOKENS}",
        lambda x: _regions_over_tokens(GeneralAttention(x.size.width, x.size.width), x),
    ),
    "additive_attention": Case(
        "attention",
        f"AdditiveAttention(d, d, hidden_dim=d): {_REGIONS_OVER_TOKENS}",
        lambda x: _regions_over_tokens(AdditiveAttention(x.size.width, x.size.width, x.size.width), x),
    ),
    "concat_attention": Case(
        "attention",
        f"ConcatAttention(d, d, hidden_dim=d): {_REGIONS_OVER_TOKENS}",
        lambda x: _regions_over_tokens(ConcatAttention(x.size.width, x.size.width, x.size.width), x),
    ),
    "hard_attention": Case(
        "attention",
        f"HardAttention(ScaledDotProductScore()), Gumbel estimator: {_REGIONS_OVER_TOKENS}",
        lambda x: _regions_over_tokens(HardAttention(ScaledDotProductScore()), x),
    ),
    "cbam": Case("vision", f"CBAM(d): {_FEATURE_MAP}", lambda x: _vision(CBAM(x.size.width), x)),
    "channel_attention": Case(
        "vision", f"ChannelAttention(d): {_FEATURE_MAP}", lambda x: _vision(ChannelAttention(x.size.width), x)
    ),
    "spatial_attention": Case(
        "vision", f"SpatialAttention(): {_FEATURE_MAP}", lambda x: _vision(SpatialAttention(), x)
    ),
    "spatial_transformer": Case(
        "vision",
        f"SpatialTransformer(d) (affine, default localisation net): {_FEATURE_MAP}",
        lambda x: _vision(SpatialTransformer(x.size.width), x),
    ),
    **{
        name: Case(
            "fusion", f"create_fusion({name!r}, d, d, hidden_dim=d, dropout=0)", partial(_fusion, name)
        )
        for name in FUSIONS
    },
    "mfb_block": Case(
        "fusion", "MFB(d, d, o=d, k=5): every region with its question vector (b, 1, d)", _mfb_block
    ),
}


class Reference(NamedTuple):
    """A reference for a layer of :data:`CASES`: its name and how to build it from the vlkit workload."""

    name: str
    build: Callable[[Workload, Inputs], Workload]


def _mha_reference(self_attention: bool, vl: Workload, x: Inputs) -> Workload:
    ref = torch_mha_like(vl.module)
    if self_attention:
        pad = ~x.text_mask
        return Workload(
            ref, lambda m: m(x.text, x.text, x.text, key_padding_mask=pad, need_weights=False), vl.inputs
        )
    pad = ~x.image_mask
    return Workload(
        ref, lambda m: m(x.text, x.image, x.image, key_padding_mask=pad, need_weights=False), vl.inputs
    )


def _same_call(plain: type[nn.Module]) -> Callable[[Workload, Inputs], Workload]:
    return lambda vl, x: Workload(plain(vl.module).to(x.image.device), vl.forward, vl.inputs)


#: layer name (a key of CASES) -> its reference.
REFERENCES: dict[str, Reference] = {
    "mha_self": Reference("torch.nn.MultiheadAttention, same weights", partial(_mha_reference, True)),
    "mha_cross": Reference("torch.nn.MultiheadAttention, same weights", partial(_mha_reference, False)),
    "cbam": Reference(
        "timm CbamModule, weights copied (+ BatchNorm)",
        lambda vl, x: Workload(timm_cbam_like(vl.module), vl.forward, vl.inputs),
    ),
    "parallel_coattention": Reference(
        "plain parallel co-attention equations", _same_call(PlainParallelCoAttention)
    ),
    "cross_modal_attention": Reference(
        "plain cross-modal attention equations", _same_call(PlainCrossModalAttention)
    ),
    "mfb": Reference("plain MFB + attention equations", _same_call(PlainMFBCoAttention)),
    "mfb_block": Reference("plain MFB equation", _same_call(PlainMFB)),
}
SCALING_LAYERS = ("parallel_coattention", "cross_modal_attention", "mha_cross")


def check_same_output(vl: Workload, ref: Workload) -> float:
    """Assert that a layer and its reference give the same primary output (float32, eval); return max |diff|.

    Raises:
        AssertionError: if the outputs differ beyond :data:`CHECK_TOLERANCE`.
    """
    vl.module.eval()
    ref.module.eval()
    with torch.no_grad():
        a, b = primary(vl.forward(vl.module)), primary(ref.forward(ref.module))
    torch.testing.assert_close(a, b, **CHECK_TOLERANCE)
    return float((a - b).abs().max())


def scaling_sizes(quick: bool) -> dict[str, list[Size]]:
    """The sizes of the scaling section: ``{"regions": [...], "tokens": [...]}``."""
    if quick:
        q = QUICK_SCALING
        fixed_n, fixed_l = q["fixed"]
        return {
            "regions": [Size(f"n={n}", q["batch"], n, fixed_l, q["width"]) for n in q["regions"]],
            "tokens": [Size(f"l={l}", q["batch"], fixed_n, l, q["width"]) for l in q["tokens"]],
        }
    return {
        "regions": [Size(f"n={n}", SCALING_BATCH, n, 14, 512) for n in SCALING_REGIONS],
        "tokens": [Size(f"l={l}", SCALING_BATCH, 196, l, 512) for l in SCALING_TOKENS],
    }
