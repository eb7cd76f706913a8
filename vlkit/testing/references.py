"""Plain references of vlkit's layers: their equations evaluated directly, with a layer's weights.

Each reference takes a vlkit layer, copies its weights, and computes what the layer computes,
written as a competent engineer would write it from the paper (batched matmuls, a textbook
masked softmax, each product in its cheapest order), without vlkit's input checks, mask
handling shortcuts or fused paths. They are test oracles (``tests/``) and the baselines of
``scripts/benchmark.py``, which checks each pair equal before timing it.

- :class:`PlainParallelCoAttention`: parallel co-attention (Lu et al., NeurIPS 2016,
  arXiv:1606.00061), vs :class:`vlkit.fusion.ParallelCoAttention`.
- :class:`PlainCrossModalAttention`: cross-modal attention, regions over tokens with the
  general score, vs :class:`vlkit.fusion.CrossModalAttention`.
- :func:`plain_mfb` / :class:`PlainMFB`: multi-modal factorized bilinear pooling (Yu et al.,
  ICCV 2017, arXiv:1708.01471), vs :class:`vlkit.fusion.MFB`; :class:`PlainMFBCoAttention`, MFB
  with co-attention, vs :class:`vlkit.fusion.MFBCoAttention`.
- :func:`torch_mha_like`: ``torch.nn.MultiheadAttention`` with the weights of a
  :class:`vlkit.attention.MultiHeadAttention`.
- :func:`timm_cbam_like`: timm's ``CbamModule`` with the weights of a :class:`vlkit.vision.CBAM`.

Shape legend: ``b`` batch, ``n`` regions, ``l`` tokens, ``d_v`` / ``d_q`` region and token
widths, ``k`` hidden width, ``o`` MFB output width, ``G`` glimpses.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from vlkit.attention import GeneralScore, MultiHeadAttention
from vlkit.fusion import MFB, CrossModalAttention, MFBCoAttention, ParallelCoAttention
from vlkit.vision import CBAM

__all__ = [
    "PlainCrossModalAttention",
    "PlainMFB",
    "PlainMFBCoAttention",
    "PlainOutput",
    "PlainParallelCoAttention",
    "plain_mfb",
    "timm_cbam_like",
    "torch_mha_like",
]


class PlainOutput(NamedTuple):
    """Output of the plain fusion references: the fused vector and the attention weights."""

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
    """Parallel co-attention (Lu et al., NeurIPS 2016) from its equations, with a vlkit layer's weights.

    In the paper's column form, ``V = imageᵀ (d_v × n)``, ``Q = textᵀ (d_q × l)``:
    ``C = tanh(Qᵀ W_b V)`` (rows of padded tokens and columns of padded regions set to 0, so
    padding changes nothing), ``H_v = tanh(W_v V + (W_q Q) C)``, ``H_q = tanh(W_q Q + (W_v V) Cᵀ)``,
    ``a_v = softmax(w_hvᵀ H_v)``, ``a_q = softmax(w_hqᵀ H_q)``, ``v̂ = V a_v``, ``q̂ = Q a_q``,
    ``fused = [v̂; q̂]``. Evaluated row-wise (features are rows, as the inputs come): ``(W_v V)ᵀ =
    image W_vᵀ``, ``H_vᵀ = tanh(image W_vᵀ + Cᵀ (text W_qᵀ))``, ``H_qᵀ = tanh(text W_qᵀ + C (image
    W_vᵀ))``: the same products, without transposed views. Parameters: ``W_b`` = ``affinity``,
    ``W_v`` = ``image_proj.weight``, ``W_q`` = ``text_proj.weight``, ``w_hv`` / ``w_hq`` =
    ``image_score`` / ``text_score`` weights.

    Shapes: ``forward(image (b, n, d_v), image_mask (b, n) | None, text (b, l, d_q), text_mask
    (b, l) | None) -> PlainOutput(fused (b, d_v + d_q), a_v (b, n), a_q (b, l))``.

    Raises:
        ValueError: a layer with ``combine`` other than ``"concat"`` or with hard attention.
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
        C = torch.tanh(text @ self.W_b @ image.transpose(1, 2))  # Qᵀ W_b V: (b, l, n)
        if text_mask is not None:
            C = C * text_mask[:, :, None]
        if image_mask is not None:
            C = C * image_mask[:, None, :]
        WvV = image @ self.W_v.T  # (W_v V)ᵀ: (b, n, k)
        WqQ = text @ self.W_q.T  # (W_q Q)ᵀ: (b, l, k)
        H_v = torch.tanh(WvV + C.transpose(1, 2) @ WqQ)  # H_vᵀ: (b, n, k)
        H_q = torch.tanh(WqQ + C @ WvV)  # H_qᵀ: (b, l, k)
        a_v = _softmax(H_v @ self.w_hv, image_mask)  # (b, n)
        a_q = _softmax(H_q @ self.w_hq, text_mask)  # (b, l)
        v_hat = (a_v[:, None, :] @ image)[:, 0]  # Σ a_v^i v_i: (b, d_v)
        q_hat = (a_q[:, None, :] @ text)[:, 0]  # Σ a_q^j q_j: (b, d_q)
        return PlainOutput(torch.cat([v_hat, q_hat], -1), a_v, a_q)


class PlainCrossModalAttention(nn.Module):
    """Cross-modal attention, regions over tokens with the general score, with a vlkit layer's weights.

    ``s_ji = r_jᵀ W t_i``, ``α_ji = softmax_i(s_ji)`` over the kept tokens, ``c_j = Σ_i α_ji t_i``;
    then, as :class:`vlkit.fusion.CrossModalAttention` pools it, the means over the kept regions
    ``image = mean_j r_j``, ``text = mean_j c_j``, ``ā_i = mean_j α_ji`` and ``fused = [image; text]``.
    ``W`` = ``attention.score.weight``. The scores ``image W textᵀ`` are multiplied tokens first,
    ``image (text Wᵀ)ᵀ``: ``l·d_q·d_v + n·l·d_v`` multiply-adds instead of ``n·d_v·d_q + n·d_q·l``
    left to right, fewer whenever there are fewer tokens than regions.

    Shapes: ``forward(image (b, n, d_v), image_mask (b, n) | None, text (b, l, d_q), text_mask
    (b, l) | None) -> PlainOutput(fused (b, d_v + d_q), None, ā (b, l))``.

    Raises:
        ValueError: a layer other than ``direction="image_to_text"``, the general score and
            ``combine="concat"``.
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
        projected = text @ self.W.T  # (W t_i)ᵀ: (b, l, d_v)
        s = image @ projected.transpose(1, 2)  # s_ji: (b, n, l)
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
    """MFB (Yu et al., ICCV 2017): ``z = SumPool(Uᵀx ⊙ Vᵀy, k)``, ``z ← sign(z)·sqrt(|z|)``, ``z ← z / ‖z‖₂``.

    Shapes: ``x (..., d_x)``, ``y (..., d_y)`` (broadcast against each other), ``U (k·o, d_x)``,
    ``V (k·o, d_y)``, biases ``(k·o,)``, ``factor = k`` -> ``(..., o)``.
    """
    e = (x @ U.T + b_U) * (y @ V.T + b_V)  # Uᵀx ⊙ Vᵀy: (..., k·o)
    z = e.unflatten(-1, (e.shape[-1] // factor, factor)).sum(-1)  # sum of k consecutive: (..., o)
    z = torch.sign(z) * torch.sqrt(torch.abs(z))
    return z / z.norm(dim=-1, keepdim=True)


class PlainMFB(nn.Module):
    """The MFB block by :func:`plain_mfb`, with a vlkit :class:`vlkit.fusion.MFB`'s weights (U, V).

    Shapes: ``forward(x (..., d_x), y (..., d_y)) -> (..., o)``.
    """

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
    """MFB with co-attention (fusion ``mfb``, Yu et al. 2017) from its equations, with a layer's weights.

    ``q̂ = [Σ_j α^g_j q_j]_g`` with ``α^g = softmax(MLP_q(Q)_g)``; region scores
    ``z_i = MFB(v_i, q̂)``; ``v̂ = [Σ_i β^g_i v_i]_g`` with ``β^g = softmax(MLP_v(z)_g)``;
    ``fused = MFB(v̂, q̂)``; every MFB by :func:`plain_mfb`. Covers ``order=1`` (MFB).

    Shapes: ``forward(image (b, n, d_v), image_mask (b, n) | None, text (b, l, d_q), text_mask
    (b, l) | None) -> PlainOutput(fused (b, o), β averaged over glimpses (b, n), α averaged (b, l))``.

    Raises:
        ValueError: a layer of ``order`` > 1 (MFH).
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

    vlkit's ``q_proj``, ``k_proj``, ``v_proj`` stack into torch's ``in_proj_weight`` (rows q, k,
    v) when the context width is ``dim``, else go to torch's separate ``q_proj_weight``,
    ``k_proj_weight``, ``v_proj_weight`` (``kdim = vdim = dim_context``); the biases stack into
    ``in_proj_bias``, ``out_proj`` maps to ``out_proj``. Returned in training mode, on the
    layer's device; call it as ``ref(query, key, value, key_padding_mask=~mask)`` (torch's
    masks are True where *not* to attend).

    Raises:
        ValueError: if the layer has no q/k/v bias (``qkv_bias=False``).
    """
    if layer.q_proj.bias is None:
        raise ValueError("the weight copy covers qkv_bias=True only")
    context_dim = layer.k_proj.in_features
    ref = nn.MultiheadAttention(
        layer.dim, layer.num_heads, batch_first=True, kdim=context_dim, vdim=context_dim
    )
    projections = (layer.q_proj, layer.k_proj, layer.v_proj)
    with torch.no_grad():
        if context_dim == layer.dim:
            ref.in_proj_weight.copy_(torch.cat([p.weight for p in projections]))
        else:  # kdim != embed_dim: torch keeps separate q/k/v weights
            ref.q_proj_weight.copy_(layer.q_proj.weight)
            ref.k_proj_weight.copy_(layer.k_proj.weight)
            ref.v_proj_weight.copy_(layer.v_proj.weight)
        ref.in_proj_bias.copy_(torch.cat([p.bias for p in projections]))
        ref.out_proj.weight.copy_(layer.out_proj.weight)
        ref.out_proj.bias.copy_(layer.out_proj.bias)
    return ref.to(layer.out_proj.weight.device)


def timm_cbam_like(layer: CBAM) -> nn.Module:
    """timm's ``CbamModule`` with a vlkit CBAM's weights.

    The channel MLPs have the same structure (vlkit's *is* timm's) and are copied; timm's
    spatial branch is a bias-free conv followed by a BatchNorm, vlkit's a conv with a bias: the
    conv weight is copied and the BatchNorm is set to the identity plus vlkit's conv bias
    (running mean 0, running variance 1 − eps, weight 1), so the two agree in eval mode (in
    training mode timm's BatchNorm normalises with batch statistics).
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
