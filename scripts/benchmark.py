"""Speed and memory of vlkit's attention, fusion and vision layers, with references measured beside them.

Usage:
    python scripts/benchmark.py [--device cpu|cuda|auto] [--dtype float32|bfloat16] [--compile]
        [--repeats 10] [--warmup 2] [--max-seconds 5] [--threads N] [--quick] [--only NAME ...]
        [--sections references layers scaling] [--scaling] [--out results.json] [--markdown table.md]

What is measured (three sections, each with its tables; ``--sections`` picks them, by default
references and layers, ``--scaling`` adds scaling; ``--only`` restricts all three to the named
layers):

- **layers**: every attention layer (``MultiHeadAttention`` self and cross, the single-head
  ``Attention`` family, ``HardAttention``), the vision blocks (``CBAM``, ``ChannelAttention``,
  ``SpatialAttention``, ``SpatialTransformer``) and every registered fusion
  (:data:`vlkit.fusion.FUSIONS`, built with ``create_fusion(name, d, d, hidden_dim=d,
  dropout=0)``, other arguments at their defaults, e.g. MCAN depth 6) at two standard sizes:
  VQA (batch 64, 196 = 14×14 regions, 14 tokens, width 512) and captioning (batch 32, 196
  regions, 20 tokens, width 512); the vision blocks get feature maps ``(b, 512, 14, 14)``.
  Text is right-padded with a realistic mask (lengths drawn uniformly from ``[l/3, l]``, the
  first row full, the last l/3 long); regions come with the all-True mask that
  ``vlkit.vision.ImageEncoder`` returns.
  ``CASES`` says what each layer is called on.
- **references** (vlkit / reference ratios; > 1 means vlkit is slower or larger):
  ``MultiHeadAttention`` vs ``torch.nn.MultiheadAttention(batch_first=True)`` with the same
  weights, self-attention over the tokens (text key padding mask) and cross-attention with
  tokens as queries and regions as keys (region key padding mask); ``CBAM`` vs timm's
  ``CbamModule`` (channel MLP and spatial conv copied; timm adds a BatchNorm after the spatial
  conv, set to the identity for the output check, and in training mode it normalises with
  batch statistics, so timm does slightly more work); ``ParallelCoAttention``,
  ``CrossModalAttention``, ``MFBCoAttention`` (fusion ``mfb``) and the ``MFB`` block vs
  plain evaluations of the SPEC.md equations (:class:`PlainParallelCoAttention`,
  :class:`PlainCrossModalAttention`, :class:`PlainMFBCoAttention`, :class:`PlainMFB`) with
  the same weights. Before timing, each pair's outputs are checked equal in float32
  (``torch.testing.assert_close``, atol 1e-5, rtol 1e-4); a mismatch stops the run.
  The two modules of a pair are timed interleaved (A, B, A, B, ...), so drift hits both.
- **scaling** (``--scaling``): forward+backward time and peak memory of
  ``ParallelCoAttention``, ``CrossModalAttention`` and ``MultiHeadAttention`` (cross) as the
  regions grow (49, 196, 784, 3136; 14 tokens) and as the tokens grow (8 ... 128; 196
  regions), at batch 16 (the exponent does not depend on the batch, and 3136 regions at
  batch 64 would take minutes per step on a CPU). The growth exponent is the least-squares
  slope of log time against log n (:func:`fit_exponent`); near 1 in both regions and tokens
  means time linear in regions × tokens. Where an n-independent part dominates at small n
  (e.g. the region projections when only the tokens grow) the slope is well below 1, so the
  slopes between consecutive sizes are reported too.

How:

- **forward**: inference, ``module.eval()`` under ``torch.no_grad()`` (so
  ``torch.nn.MultiheadAttention`` may take its fused inference fast path: that is what a user
  gets). **forward+backward**: ``module.train()`` (dropout is 0 everywhere), the sum of the
  primary output (first field of the returned tuple: ``fused``, ``output``, ``context``, or the
  tensor) backpropagated to every parameter and to the float inputs (as in a layer inside a
  network); parameter and input gradients are set to None before each run, outside the timed
  part. Times are the median of ``--repeats`` runs after ``--warmup`` untimed runs, with the
  interquartile range (IQR); CPU times use ``time.perf_counter``, CUDA times
  ``torch.cuda.Event(enable_timing=True)`` around the run and a synchronize. So that slow
  layers (MCAN at depth 6 takes tens of seconds per step on a small CPU) do not hold the run
  for an hour, ``--max-seconds`` (default 5, 0 for none) caps each phase of a measurement:
  warm-up stops once it has taken that long, and the first timed run fixes the number of runs
  to what fits (at least one). The tables give the runs actually made ("runs": forward /
  forward+backward).
- **peak memory** of one forward+backward, in MiB above the memory in use when it starts (so
  it includes activations, parameter and input gradients, not the parameters or inputs). CUDA:
  ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, minus the memory
  allocated at the start. CPU: the run executes under
  ``torch.profiler.profile(activities=[CPU], profile_memory=True)``; the profiler records one
  memory record per allocation (+bytes) and per free (-bytes) with its timestamp, and
  :func:`cpu_peak_bytes` walks these raw records in time order and returns the maximum of the
  running sum. The raw records are read from ``prof.profiler.kineto_results`` (a private but
  long-standing attribute): the public ``prof.events()`` attaches each record to the operator
  running at the time, so walking ``FunctionEvent.self_cpu_memory_usage`` nets out memory an
  operator allocates and frees itself and misses frees outside operators, and walking
  ``cpu_memory_usage`` counts children again inside their parents. On ``c = a @ b;
  d = relu(c); d.sum().backward()`` with ``a (512, 1024)``, ``b (1024, 2048)`` float32 (``c``,
  ``d`` and the gradient of ``c`` 4 MiB each, the gradients of ``b`` and ``a`` 8 and 2 MiB: 22 MiB
  at the peak) the raw walk gives 22 MiB, the ``self_cpu_memory_usage`` walk 18 MiB and the
  ``cpu_memory_usage`` walk 54 MiB. If the raw records are missing (another torch version),
  the ``self_cpu_memory_usage`` walk is the fallback and the JSON says so
  (``settings.memory_method``). The tests check the measure against allocations of known size
  and against this forward+backward.
- ``--dtype bfloat16`` runs every forward under ``torch.autocast(device, dtype=bfloat16)``;
  ``--compile`` wraps every module, vlkit's and the reference's alike, in ``torch.compile``
  (at least two warm-up runs: the first compiles; a layer that fails to compile is skipped
  with a "compile failed: ..." note). ``--quick`` uses tiny sizes, one run and no time cap
  (for the tests).

Caveats: CPU timings depend on the thread count (``--threads``; default torch's, recorded in
the JSON) and on other load on the machine (the load average at start and end is recorded);
the IQR shows the spread. On a small machine shared with other jobs, ``--threads 1`` can be
both faster and steadier than one thread per core (docs/performance.md). Under ``--compile`` the
timings exclude compilation. The plain references share vlkit's choice of operations for
each equation (batched matmuls), so their ratios measure vlkit's overhead (checks, mask
handling, upcasts), not a different algorithm. Peak memory on CPU counts allocations made
through PyTorch's allocator only (not oneDNN/MKL scratch space).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from vlkit.attention import (
    AdditiveAttention,
    ConcatAttention,
    DotProductAttention,
    GeneralAttention,
    GeneralScore,
    HardAttention,
    MultiHeadAttention,
    ScaledDotProductAttention,
    ScaledDotProductScore,
)
from vlkit.fusion import (
    FUSIONS,
    MFB,
    CrossModalAttention,
    MFBCoAttention,
    ParallelCoAttention,
    create_fusion,
)
from vlkit.vision import CBAM, ChannelAttention, SpatialAttention, SpatialTransformer

MiB = 2**20
NUM_HEADS = 8  # MultiHeadAttention heads at every size (width 512: 64 per head)
CHECK_TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}  # outputs of a vlkit layer and its reference


# ---------------------------------------------------------------------------------------------
# Sizes and inputs
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Workloads: a module and the call that runs it
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Plain references: the SPEC.md equations evaluated directly, with a vlkit layer's weights
# ---------------------------------------------------------------------------------------------


class PlainOutput(NamedTuple):
    """Output of the plain references: the fused vector and the attention weights."""

    fused: Tensor
    image_weights: Tensor | None
    text_weights: Tensor | None


def _copy(t: Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone())


def _softmax(scores: Tensor, keep: Tensor | None) -> Tensor:
    """Textbook masked softmax over the last axis: -inf at padding."""
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, dim=-1)


class PlainParallelCoAttention(nn.Module):
    """SPEC.md §3 parallel co-attention in the paper's column form, with a vlkit layer's weights.

    ``V = image^T (d_v × n)``, ``Q = text^T (d_q × l)``; ``C = tanh(Qᵀ W_b V)`` (rows of padded
    tokens and columns of padded regions set to 0, so padding changes nothing),
    ``H_v = tanh(W_v V + (W_q Q) C)``, ``H_q = tanh(W_q Q + (W_v V) Cᵀ)``,
    ``a_v = softmax(w_hvᵀ H_v)``, ``a_q = softmax(w_hqᵀ H_q)``, ``v̂ = V a_v``, ``q̂ = Q a_q``,
    ``fused = [v̂; q̂]``. Parameters: ``W_b`` = ``affinity``, ``W_v`` = ``image_proj.weight``,
    ``W_q`` = ``text_proj.weight``, ``w_hv`` / ``w_hq`` = ``image_score`` / ``text_score`` weights.
    """

    def __init__(self, layer: ParallelCoAttention) -> None:
        super().__init__()
        if layer.combine != "concat" or layer.image_context is not None:
            raise ValueError("the plain reference covers combine='concat' with soft attention only")
        self.W_b = _copy(layer.affinity)  # (d_q, d_v)
        self.W_v = _copy(layer.image_proj.weight)  # (k, d_v)
        self.W_q = _copy(layer.text_proj.weight)  # (k, d_q)
        self.w_hv = _copy(layer.image_score.weight[0])  # (k,)
        self.w_hq = _copy(layer.text_score.weight[0])  # (k,)

    def forward(self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None):
        V = image.transpose(1, 2)  # (b, d_v, n)
        Q = text.transpose(1, 2)  # (b, d_q, l)
        C = torch.tanh(Q.transpose(1, 2) @ self.W_b @ V)  # (b, l, n)
        if text_mask is not None:
            C = C * text_mask[:, :, None]
        if image_mask is not None:
            C = C * image_mask[:, None, :]
        WvV = self.W_v @ V  # (b, k, n)
        WqQ = self.W_q @ Q  # (b, k, l)
        H_v = torch.tanh(WvV + WqQ @ C)  # (b, k, n)
        H_q = torch.tanh(WqQ + WvV @ C.transpose(1, 2))  # (b, k, l)
        a_v = _softmax(self.w_hv @ H_v, image_mask)  # (b, n)
        a_q = _softmax(self.w_hq @ H_q, text_mask)  # (b, l)
        v_hat = (V @ a_v[:, :, None])[:, :, 0]  # Σ a_v^i v_i: (b, d_v)
        q_hat = (Q @ a_q[:, :, None])[:, :, 0]  # Σ a_q^j q_j: (b, d_q)
        return PlainOutput(torch.cat([v_hat, q_hat], -1), a_v, a_q)


class PlainCrossModalAttention(nn.Module):
    """SPEC.md §4 cross-modal attention, image to text with the general score, with a vlkit layer's weights.

    ``s_ji = r_jᵀ W t_i``, ``α_ji = softmax_i(s_ji)`` over the kept tokens, ``c_j = Σ_i α_ji t_i``;
    then, as :class:`vlkit.fusion.CrossModalAttention` pools it, the means over the kept regions
    ``image = mean_j r_j``, ``text = mean_j c_j``, ``ā_i = mean_j α_ji`` and ``fused = [image; text]``.
    ``W`` = ``attention.score.weight``.
    """

    def __init__(self, layer: CrossModalAttention) -> None:
        super().__init__()
        score = layer.attention.score
        if (
            layer.direction != "image_to_text"
            or layer.combine != "concat"
            or not isinstance(score, GeneralScore)
        ):
            raise ValueError("the plain reference covers image_to_text, the general score and concat only")
        self.W = _copy(score.weight)  # (d_v, d_q)

    def forward(self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None):
        s = image @ self.W @ text.transpose(1, 2)  # s_ji: (b, n, l)
        alpha = _softmax(s, None if text_mask is None else text_mask[:, None, :])  # (b, n, l)
        c = alpha @ text  # c_j: (b, n, d_q)
        keep = (
            torch.ones_like(image[..., :1]) if image_mask is None else image_mask[:, :, None].to(image.dtype)
        )
        count = keep.sum(1)  # (b, 1) kept regions
        image_vec = (image * keep).sum(1) / count  # (b, d_v)
        text_vec = (c * keep).sum(1) / count  # (b, d_q)
        text_weights = (alpha * keep).sum(1) / count  # ā: (b, l)
        return PlainOutput(torch.cat([image_vec, text_vec], -1), None, text_weights)


def plain_mfb(x: Tensor, y: Tensor, U: Tensor, b_U: Tensor, V: Tensor, b_V: Tensor, factor: int) -> Tensor:
    """SPEC.md §4 MFB: ``z = SumPool(Uᵀx ⊙ Vᵀy, k)``, ``z ← sign(z)·sqrt(|z|)``, ``z ← z / ‖z‖₂``."""
    e = (x @ U.T + b_U) * (y @ V.T + b_V)  # Uᵀx ⊙ Vᵀy: (..., k·o)
    z = e.unflatten(-1, (e.shape[-1] // factor, factor)).sum(-1)  # sum of k consecutive: (..., o)
    z = torch.sign(z) * torch.sqrt(torch.abs(z))
    return z / z.norm(dim=-1, keepdim=True)


class PlainMFB(nn.Module):
    """The MFB block by :func:`plain_mfb`, with a vlkit :class:`vlkit.fusion.MFB`'s weights (U, V)."""

    def __init__(self, block: MFB) -> None:
        super().__init__()
        self.factor = block.factor
        self.U, self.b_U = _copy(block.x_proj.weight), _copy(block.x_proj.bias)  # (k·o, d_x), (k·o,)
        self.V, self.b_V = _copy(block.y_proj.weight), _copy(block.y_proj.bias)  # (k·o, d_y), (k·o,)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return plain_mfb(x, y, self.U, self.b_U, self.V, self.b_V, self.factor)


def _plain_attention_mlp(layer: nn.Module) -> nn.ParameterList:
    """The weights ``W_1, b_1, W_2, b_2`` of an attentional reduction's score MLP."""
    first, last = layer.mlp[0], layer.mlp[-1]
    return nn.ParameterList([_copy(first.weight), _copy(first.bias), _copy(last.weight), _copy(last.bias)])


def _plain_glimpses(scores_from: Tensor, x: Tensor, keep: Tensor | None, mlp: nn.ParameterList):
    """``α^g = softmax(W_2 relu(W_1 s + b_1) + b_2)`` over positions; ``[Σ_m α^g_m x_m]_g`` concatenated."""
    W1, b1, W2, b2 = mlp
    scores = torch.relu(scores_from @ W1.T + b1) @ W2.T + b2  # (b, m, G)
    alpha = _softmax(scores.transpose(1, 2), None if keep is None else keep[:, None, :])  # (b, G, m)
    return (alpha @ x).flatten(1), alpha  # (b, G·d), (b, G, m)


class PlainMFBCoAttention(nn.Module):
    """MFB with co-attention (fusion ``mfb``, Yu et al. 2017) from its equations, with a vlkit layer's weights.

    ``q̂ = [Σ_j α^g_j q_j]_g`` with ``α^g = softmax(MLP_q(Q)_g)``; region scores
    ``z_i = MFB(v_i, q̂)``; ``v̂ = [Σ_i β^g_i v_i]_g`` with ``β^g = softmax(MLP_v(z)_g)``;
    ``fused = MFB(v̂, q̂)``; every MFB by :func:`plain_mfb`. Covers ``order=1`` (MFB).
    """

    def __init__(self, layer: MFBCoAttention) -> None:
        super().__init__()
        if len(layer.pooling.blocks) != 1:
            raise ValueError("the plain reference covers MFB (order=1) only")
        self.text_mlp = _plain_attention_mlp(layer.text_attention)
        self.image_mlp = _plain_attention_mlp(layer.image_attention)
        self.region_mfb = PlainMFB(layer.region_pooling.blocks[0])
        self.mfb = PlainMFB(layer.pooling.blocks[0])

    def forward(self, image: Tensor, image_mask: Tensor | None, text: Tensor, text_mask: Tensor | None):
        q_hat, alpha = _plain_glimpses(text, text, text_mask, self.text_mlp)  # (b, G_q·d_q), (b, G_q, l)
        z = self.region_mfb(image, q_hat[:, None, :])  # MFB(v_i, q̂): (b, n, o)
        v_hat, beta = _plain_glimpses(z, image, image_mask, self.image_mlp)  # (b, G_v·d_v), (b, G_v, n)
        return PlainOutput(self.mfb(v_hat, q_hat), beta.mean(1), alpha.mean(1))


def torch_mha_like(layer: MultiHeadAttention) -> nn.MultiheadAttention:
    """``torch.nn.MultiheadAttention(batch_first=True)`` with the weights of a vlkit MultiHeadAttention.

    vlkit's ``q_proj``, ``k_proj``, ``v_proj`` stack into torch's ``in_proj_weight`` /
    ``in_proj_bias`` (rows q, k, v), ``out_proj`` maps to ``out_proj``.

    Raises:
        ValueError: if the layer has no q/k/v bias or a context width other than ``dim``.
    """
    if layer.q_proj.bias is None or layer.k_proj.in_features != layer.dim:
        raise ValueError("the weight copy covers qkv_bias=True and dim_context=dim only")
    ref = nn.MultiheadAttention(layer.dim, layer.num_heads, batch_first=True)
    projections = (layer.q_proj, layer.k_proj, layer.v_proj)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
        ref.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
        ref.out_proj.weight.copy_(layer.out_proj.weight)
        ref.out_proj.bias.copy_(layer.out_proj.bias)
    return ref.to(layer.out_proj.weight.device)


def timm_cbam_like(layer: CBAM) -> nn.Module:
    """timm's ``CbamModule`` with a vlkit CBAM's weights.

    The channel MLPs have the same structure (vlkit's *is* timm's) and are copied; timm's
    spatial branch is a bias-free conv followed by a BatchNorm, vlkit's a conv with a bias: the
    conv weight is copied and the BatchNorm is set to the identity plus vlkit's conv bias
    (running mean 0, running variance 1 − eps, weight 1), so the two agree in eval mode.
    """
    from timm.layers.cbam import CbamModule  # not exported by timm.layers

    conv = layer.spatial.conv
    ref = CbamModule(
        layer.channel.channels,
        rd_channels=layer.channel.fc1.out_channels,
        spatial_kernel_size=conv.kernel_size[0],
    )
    ref.channel.load_state_dict(layer.channel.state_dict())
    bn = ref.spatial.conv.bn
    with torch.no_grad():
        ref.spatial.conv.conv.weight.copy_(conv.weight)
        bn.weight.fill_(1.0)
        bn.bias.copy_(conv.bias)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    return ref.to(conv.weight.device)


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
    "parallel_coattention": Reference("plain SPEC §3 equations", _same_call(PlainParallelCoAttention)),
    "cross_modal_attention": Reference("plain SPEC §4 equations", _same_call(PlainCrossModalAttention)),
    "mfb": Reference("plain MFB + attention equations", _same_call(PlainMFBCoAttention)),
    "mfb_block": Reference("plain SPEC §4 MFB equation", _same_call(PlainMFB)),
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


# ---------------------------------------------------------------------------------------------
# Measuring: time, peak memory, growth exponents
# ---------------------------------------------------------------------------------------------


def _memory_records(prof: profile) -> list[tuple[int, int]] | None:
    """Raw ``(time_ns, ±bytes)`` CPU allocation records of a finished profile, or None if unavailable."""
    try:
        events = prof.profiler.kineto_results.events()
    except AttributeError:
        return None
    return [
        (e.start_ns(), e.nbytes())
        for e in events
        if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
    ]


def cpu_peak_bytes(fn: Callable[[], Any]) -> tuple[int, str]:
    """Peak CPU memory that ``fn()`` allocates above what is in use when it starts, in bytes.

    Runs ``fn`` under the profiler with ``profile_memory=True`` and walks the raw allocation
    (+bytes) and free (−bytes) records in time order, returning the maximum running sum (see
    the module docstring for why not ``prof.events()``). Falls back to walking the operators'
    ``self_cpu_memory_usage`` in start-time order if the raw records are unavailable.

    Returns:
        ``(peak_bytes, method)`` with method ``"raw allocation records"`` or ``"operator events"``.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = _memory_records(prof)
    method = "raw allocation records"
    if records is None:
        method = "operator events"
        events = sorted(prof.events(), key=lambda e: e.time_range.start)
        records = [(e.time_range.start, e.self_cpu_memory_usage) for e in events]
    running = peak = 0
    for _, nbytes in sorted(records, key=lambda r: r[0]):
        running += nbytes
        peak = max(peak, running)
    return peak, method


def peak_memory_bytes(fn: Callable[[], Any], device: torch.device) -> tuple[int, str]:
    """Peak memory of ``fn()`` above the start, in bytes, and the method used (CUDA allocator or CPU profiler)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start, "torch.cuda.max_memory_allocated"
    return cpu_peak_bytes(fn)


def time_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one ``fn()`` in milliseconds (CUDA events on a GPU, perf_counter on a CPU)."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end)
    start_s = time.perf_counter()
    fn()
    return (time.perf_counter() - start_s) * 1e3


def median_iqr(values: list[float]) -> tuple[float, float]:
    """Median and interquartile range (0 for fewer than two values)."""
    if len(values) < 2:
        return values[0], 0.0
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q2, q3 - q1


def fit_exponent(ns: Iterable[float], ts: Iterable[float]) -> tuple[float, float]:
    """Fit ``t = c · n^p`` by least squares on ``log t = log c + p log n``; returns ``(p, c)``.

    Raises:
        ValueError: fewer than two distinct sizes, or a non-positive size or time.
    """
    ns, ts = list(ns), list(ts)
    if len(ns) != len(ts) or len(set(ns)) < 2 or min(ns) <= 0 or min(ts) <= 0:
        raise ValueError(f"need >= 2 distinct positive sizes and positive times, got {ns} and {ts}")
    xs, ys = [math.log(n) for n in ns], [math.log(t) for t in ts]
    x_mean, y_mean = statistics.fmean(xs), statistics.fmean(ys)
    p = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sum((x - x_mean) ** 2 for x in xs)
    return p, math.exp(y_mean - p * x_mean)


@dataclass
class Bench:
    """Settings shared by every measurement of one run."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: float32 without autocast
    compile: bool
    repeats: int
    warmup: int
    sizes: tuple[Size, ...]
    max_seconds: float | None = None  # time cap of one phase of one measurement (see measure)
    only: set[str] | None = None  # layer names to run; None: all
    memory_method: str | None = None  # filled by the first CPU/CUDA peak measurement

    def selected(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.only is None or n in self.only]


@dataclass
class Measurement:
    """Timings (median and IQR over the repeats, ms) and peak memory (MiB) of one module."""

    forward_ms: float | None = None
    forward_iqr_ms: float | None = None
    train_ms: float | None = None  # forward+backward
    train_iqr_ms: float | None = None
    peak_mib: float | None = None  # of one forward+backward
    forward_repeats: int = 0  # timed runs actually made (fewer than asked under --max-seconds)
    train_repeats: int = 0
    note: str | None = None  # why it was skipped, if it was


class _Runner:
    """Runs one workload: inference forward, or forward+backward, under the bench's autocast/compile."""

    def __init__(self, workload: Workload, bench: Bench) -> None:
        self.workload, self.bench = workload, bench
        workload.module.to(bench.device)
        self.fn = torch.compile(workload.module) if bench.compile else workload.module
        self.result = Measurement()

    def _autocast(self):
        dtype = self.bench.autocast_dtype
        return torch.autocast(self.bench.device.type, dtype=dtype, enabled=dtype is not None)

    def reset(self, train: bool) -> None:
        self.workload.module.train(train)
        if train:
            self.workload.module.zero_grad(set_to_none=True)
            for t in self.workload.inputs:
                t.grad = None

    def forward(self) -> None:
        with torch.no_grad(), self._autocast():
            self.workload.forward(self.fn)

    def train_step(self) -> None:
        with self._autocast():
            loss = primary(self.workload.forward(self.fn)).float().sum()
        loss.backward()


def _failure_note(bench: Bench, err: Exception) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{'compile failed' if bench.compile else 'failed'}: {type(err).__name__}: {message}"[:200]


def measure(workloads: list[Workload], bench: Bench, forward: bool = True) -> list[Measurement]:
    """Time (and measure the peak memory of) several workloads, interleaving their runs.

    For each phase (inference forward if ``forward``, then forward+backward): up to
    ``bench.warmup`` untimed rounds (at least two under ``--compile``: the first compiles),
    then up to ``bench.repeats`` timed rounds; a round runs every workload once, in turn, the
    first of them rotating from round to round (which one runs first changes its time). With
    ``bench.max_seconds``, warm-up stops once it has taken that long, and the first timed
    round sets the number of rounds to what fits in ``max_seconds`` (at least one); the
    repeats actually used are recorded. Finally one profiled forward+backward of each
    workload gives its peak memory. A workload that raises is skipped from then on with a
    note ("compile failed: ..." under ``--compile``).
    """
    runners = [_Runner(w, bench) for w in workloads]
    phases = (("forward", False), ("train", True)) if forward else (("train", True),)
    for phase, train in phases:
        times: dict[int, list[float]] = {i: [] for i in range(len(runners))}

        def run_round(timed: bool, k: int, train: bool = train, times: dict = times) -> float:
            """Run every workload still alive once, starting with workload ``k mod count``
            (so each goes first as often as the others); the seconds they took together."""
            total = 0.0
            start = k % len(runners)
            for i in [*range(start, len(runners)), *range(start)]:
                runner = runners[i]
                if runner.result.note is not None:
                    continue
                runner.reset(train)
                try:
                    elapsed = time_ms(runner.train_step if train else runner.forward, bench.device)
                except Exception as err:  # noqa: BLE001 - a layer that fails (to compile) is reported
                    runner.result.note = _failure_note(bench, err)
                    continue
                total += elapsed / 1e3
                if timed:
                    times[i].append(elapsed)
            return total

        spent, compile_rounds = 0.0, 2 if bench.compile else 0
        for k in range(max(bench.warmup, compile_rounds)):
            spent += run_round(timed=False, k=k)
            if bench.max_seconds is not None and spent >= bench.max_seconds and k + 1 >= compile_rounds:
                break
        planned, done = bench.repeats, 0
        while done < planned:
            round_s = run_round(timed=True, k=done)
            done += 1
            if done == 1 and bench.max_seconds is not None and round_s > 0:
                planned = min(bench.repeats, max(1, math.floor(bench.max_seconds / round_s)))
        for i, runner in enumerate(runners):
            if runner.result.note is None and times[i]:
                med, iqr = median_iqr(times[i])
                setattr(runner.result, f"{phase}_ms", med)
                setattr(runner.result, f"{phase}_iqr_ms", iqr)
                setattr(runner.result, f"{phase}_repeats", len(times[i]))
    for runner in runners:
        if runner.result.note is None:
            runner.reset(True)
            peak, bench.memory_method = peak_memory_bytes(runner.train_step, bench.device)
            runner.result.peak_mib = peak / MiB
            runner.reset(True)  # drop the gradients
    return [runner.result for runner in runners]


# ---------------------------------------------------------------------------------------------
# Sections: each runs, returns JSON-able results, and renders Markdown
# ---------------------------------------------------------------------------------------------


def _build(name: str, x: Inputs) -> Workload:
    torch.manual_seed(0)  # the same weights at every run
    return CASES[name].build(x)


def run_references(bench: Bench) -> list[dict]:
    """Each layer of :data:`REFERENCES` beside its reference, at every size: check equal, then measure."""
    rows = []
    for size in bench.sizes:
        x = make_inputs(size, bench.device)
        for name in bench.selected(REFERENCES):
            vl = _build(name, x)
            ref = REFERENCES[name].build(vl, x)
            max_diff = check_same_output(vl, ref)
            vl_m, ref_m = measure([vl, ref], bench)
            ratio = {
                key: getattr(vl_m, key) / getattr(ref_m, key)
                if getattr(vl_m, key) is not None and getattr(ref_m, key)
                else None
                for key in ("forward_ms", "train_ms", "peak_mib")
            }
            rows.append(
                {
                    "layer": name,
                    "reference": REFERENCES[name].name,
                    "size": size.name,
                    "max_abs_diff": max_diff,
                    "vlkit": asdict(vl_m),
                    "ref": asdict(ref_m),
                    "ratio": ratio,
                }
            )
            _log(f"reference {name} @ {size.name}: {_ratio_line(rows[-1])}")
    return rows


def run_layers(bench: Bench, paired: list[dict] | None = None) -> list[dict]:
    """Every layer of :data:`CASES` at every size; layers measured beside a reference reuse that measurement."""
    measured = {(row["layer"], row["size"]): row["vlkit"] for row in paired or []}
    rows = []
    for size in bench.sizes:
        x = make_inputs(size, bench.device)
        for name in bench.selected(CASES):
            case = CASES[name]
            if (name, size.name) in measured:
                result = measured[(name, size.name)]
            else:
                try:
                    workload = _build(name, x)
                except Exception as err:  # noqa: BLE001 - reported in the table, not fatal
                    result = asdict(Measurement(note=f"build failed: {type(err).__name__}: {err}"[:200]))
                else:
                    result = asdict(measure([workload], bench)[0])
            rows.append(
                {
                    "layer": name,
                    "group": case.group,
                    "size": size.name,
                    "description": case.description,
                    **result,
                }
            )
            _log(f"layer {name} @ {size.name}: {_fmt(result['forward_ms'])} / {_fmt(result['train_ms'])} ms")
    return rows


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


def run_scaling(bench: Bench, quick: bool = False) -> dict:
    """Forward+backward time and peak memory of :data:`SCALING_LAYERS` as regions / tokens grow; exponents."""
    points, exponents = [], []
    for axis, sizes in scaling_sizes(quick).items():
        inputs = [make_inputs(size, bench.device) for size in sizes]
        for name in bench.selected(SCALING_LAYERS):
            ns, ts, ms = [], [], []
            for size, x in zip(sizes, inputs):
                result = measure([_build(name, x)], bench, forward=False)[0]
                n = size.regions if axis == "regions" else size.tokens
                points.append({"layer": name, "axis": axis, "n": n, "size": asdict(size), **asdict(result)})
                if result.train_ms is not None:
                    ns.append(n)
                    ts.append(result.train_ms)
                    ms.append(result.peak_mib)
                _log(f"scaling {name} {axis}={n}: {_fmt(result.train_ms)} ms")
            if len(ns) >= 2:
                local = [fit_exponent(ns[i : i + 2], ts[i : i + 2])[0] for i in range(len(ns) - 1)]
                exponents.append(
                    {
                        "layer": name,
                        "axis": axis,
                        "time_exponent": fit_exponent(ns, ts)[0],
                        "memory_exponent": fit_exponent(ns, ms)[0] if min(ms) > 0 else None,
                        "local_time_exponents": local,
                        "n": ns,
                    }
                )
    return {"batch": inputs[0].size.batch if points else None, "points": points, "exponents": exponents}


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:,.{digits}f}{unit}"


def _fmt_iqr(value: float | None, iqr: float | None) -> str:
    return "n/a" if value is None else f"{_fmt(value)} ± {_fmt(iqr)}"


def _ratio_line(row: dict) -> str:
    return ", ".join(
        f"{k.removesuffix('_ms').removesuffix('_mib')} ×{_fmt(v)}" for k, v in row["ratio"].items()
    )


def _runs(m: dict) -> str:
    """Timed runs of a measurement: ``forward / fwd+bwd``, or just fwd+bwd."""
    forward = m.get("forward_repeats")
    return f"{forward} / {m['train_repeats']}" if forward else str(m["train_repeats"])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table from a header and rows of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def layers_markdown(rows: list[dict]) -> str:
    header = ["layer", "size", "forward ms (± IQR)", "fwd+bwd ms (± IQR)", "runs", "peak fwd+bwd MiB", "note"]
    body = [
        [
            r["layer"],
            r["size"],
            _fmt_iqr(r["forward_ms"], r["forward_iqr_ms"]),
            _fmt_iqr(r["train_ms"], r["train_iqr_ms"]),
            _runs(r),
            _fmt(r["peak_mib"]),
            r["note"] or "",
        ]
        for r in rows
    ]
    return markdown_table(header, body)


def references_markdown(rows: list[dict]) -> str:
    header = [
        "layer",
        "reference",
        "size",
        "fwd ms vlkit",
        "fwd ms ref",
        "fwd vlkit/ref",
        "fwd+bwd ms vlkit",
        "fwd+bwd ms ref",
        "fwd+bwd vlkit/ref",
        "runs",
        "peak MiB vlkit",
        "peak MiB ref",
        "peak vlkit/ref",
        "max abs diff",
    ]
    body = []
    for r in rows:
        vl, ref, ratio = r["vlkit"], r["ref"], r["ratio"]
        note = "; ".join(f"{side}: {m['note']}" for side, m in (("vlkit", vl), ("ref", ref)) if m["note"])
        body.append(
            [
                r["layer"],
                r["reference"] + (f" ({note})" if note else ""),
                r["size"],
                _fmt_iqr(vl["forward_ms"], vl["forward_iqr_ms"]),
                _fmt_iqr(ref["forward_ms"], ref["forward_iqr_ms"]),
                _fmt(ratio["forward_ms"]),
                _fmt_iqr(vl["train_ms"], vl["train_iqr_ms"]),
                _fmt_iqr(ref["train_ms"], ref["train_iqr_ms"]),
                _fmt(ratio["train_ms"]),
                _runs(vl),
                _fmt(vl["peak_mib"]),
                _fmt(ref["peak_mib"]),
                _fmt(ratio["peak_mib"]),
                f"{r['max_abs_diff']:.1e}",
            ]
        )
    return markdown_table(header, body)


def scaling_markdown(result: dict) -> str:
    points = markdown_table(
        ["layer", "axis", "n", "fwd+bwd ms (± IQR)", "runs", "peak MiB"],
        [
            [
                p["layer"],
                p["axis"],
                str(p["n"]),
                _fmt_iqr(p["train_ms"], p["train_iqr_ms"]),
                _runs(p),
                _fmt(p["peak_mib"]),
            ]
            for p in result["points"]
        ],
    )
    exponents = markdown_table(
        ["layer", "grows", "time exponent (fit)", "between consecutive sizes", "memory exponent (fit)"],
        [
            [
                e["layer"],
                f"{e['axis']} {e['n'][0]}…{e['n'][-1]}",
                f"{e['time_exponent']:.2f}",
                ", ".join(f"{p:.2f}" for p in e["local_time_exponents"]),
                "n/a" if e["memory_exponent"] is None else f"{e['memory_exponent']:.2f}",
            ]
            for e in result["exponents"]
        ],
    )
    return f"Batch {result['batch']}.\n\n{points}\n\nGrowth exponents (slope of log value vs log n):\n\n{exponents}"


@dataclass(frozen=True)
class Section:
    """One part of the benchmark: its name, whether it runs by default, how it runs and reads in Markdown."""

    key: str  # its name for --sections and its key in the JSON
    title: str  # its Markdown heading
    default: bool  # runs when --sections is not given
    run: Callable[[argparse.Namespace, Bench, dict], Any]  # (args, bench, results so far) -> results
    markdown: Callable[[Any], str]


#: The sections, in run order; ``--sections`` picks some, ``--scaling`` adds "scaling". To
#: benchmark something else (e.g. the data pipeline), add a Section here (``default=False``
#: for an opt-in one) and, if wanted, a shorthand flag like ``--scaling`` in ``main``.
SECTIONS: list[Section] = [
    Section(
        "references",
        "vlkit vs references (ratios vlkit / reference; > 1: vlkit slower or larger)",
        True,
        lambda args, bench, results: run_references(bench),
        references_markdown,
    ),
    Section(
        "layers",
        "Layers at the standard sizes",
        True,
        lambda args, bench, results: run_layers(bench, results.get("references")),
        layers_markdown,
    ),
    Section(
        "scaling",
        "Scaling with regions and tokens (forward+backward)",
        False,
        lambda args, bench, results: run_scaling(bench, args.quick),
        scaling_markdown,
    ),
    Section(
        "data",
        "Data pipeline vs training step (images / s; scripts/data_throughput.py)",
        False,
        lambda args, bench, results: run_data(args),
        lambda result: data_table(result),
    ),
]


def run_data(args: argparse.Namespace) -> dict:
    """images/s of the recipe's training loader (0 and 1 workers, and from cached features)
    beside its training step's (see ``scripts/data_throughput.py``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from data_throughput import measure

    batches = 2 if args.quick else 30
    return measure(args.data_recipe, batches, [0, 1], cache=True, extra=shlex.split(args.data_args))


def data_table(result: dict) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from data_throughput import table

    return f"Recipe {result['recipe']}, {result['threads']} torch threads.\n\n{table(result)}"


def describe_device(device: torch.device) -> dict:
    """The machine: CPU model, cores, torch threads and version; GPU name on CUDA."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "device": device.type,
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_start": _load_average(),  # other work on the machine slows the timings
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the platform has them."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def device_line(info: dict, settings: dict) -> str:
    """One line naming the machine and the settings, for the Markdown and the console."""
    where = (
        info.get("gpu") or f"{info['cpu']} ({info['cpu_count']} cores, {info['torch_threads']} torch threads)"
    )
    cap = f", at most {settings['max_seconds']:g} s per measurement" if settings["max_seconds"] else ""
    return (
        f"{info['device']}: {where}; torch {info['torch']}; dtype {settings['dtype']}; "
        f"compile {settings['compile']}; median of {settings['repeats']} runs after {settings['warmup']} "
        f"warm-up{cap}; load average at start {info['load_average_start']}"
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--compile", action="store_true", help="wrap every module in torch.compile")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median, IQR)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=5.0,
        help="time cap of one measurement phase: slow layers get fewer repeats (at least 1); 0: no cap",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (for the tests)")
    names = sorted(CASES)
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"layers to run: {names}")
    keys = [section.key for section in SECTIONS]
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=keys,
        default=None,
        help=f"sections to run (default: {[s.key for s in SECTIONS if s.default]})",
    )
    parser.add_argument("--scaling", action="store_true", help="add the scaling section")
    parser.add_argument(
        "--data", action="store_true", help="add the data section: loader images/s beside the training step's"
    )
    parser.add_argument(
        "--data-recipe",
        default=str(Path(__file__).resolve().parents[1] / "recipes/vqa/easy_vqa_parallel.yaml"),
        help="the recipe whose data pipeline --data measures",
    )
    parser.add_argument(
        "--data-args",
        default="",
        help='vlkit fit overrides for --data, one string: --data-args="--data.init_args.max_samples 2000"',
    )
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--markdown", default=None, help="Markdown file for the tables")
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.sections is None:
        args.sections = [section.key for section in SECTIONS if section.default]
    if args.scaling and "scaling" not in args.sections:
        args.sections.append("scaling")
    if args.data and "data" not in args.sections:
        args.sections.append("data")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if args.quick:
        args.repeats, args.warmup = 1, 0
    if args.compile:
        args.warmup = max(args.warmup, 2)  # the first run compiles, the second shows the compiled time
    bench = Bench(
        device=device,
        autocast_dtype=torch.bfloat16 if args.dtype == "bfloat16" else None,
        compile=args.compile,
        repeats=args.repeats,
        warmup=args.warmup,
        max_seconds=args.max_seconds if args.max_seconds > 0 and not args.quick else None,
        sizes=QUICK_SIZES if args.quick else SIZES,
        only=set(args.only) if args.only else None,
    )
    settings = {
        "dtype": args.dtype,
        "compile": args.compile,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "max_seconds": bench.max_seconds,
        "quick": args.quick,
        "only": args.only,
        "sections": args.sections,
        "sizes": [asdict(s) for s in bench.sizes],
        "check_tolerance": CHECK_TOLERANCE,
    }
    info = describe_device(device)
    results: dict[str, Any] = {"device": info, "settings": settings}
    started = time.perf_counter()
    markdown = [f"Device: {device_line(info, settings)}"]
    for section in SECTIONS:
        if section.key in args.sections:
            results[section.key] = section.run(args, bench, results)
            markdown.append(f"### {section.title}\n\n{section.markdown(results[section.key])}")
    settings["memory_method"] = bench.memory_method
    settings["total_s"] = time.perf_counter() - started
    info["load_average_end"] = _load_average()
    text = "\n\n".join(markdown) + "\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
