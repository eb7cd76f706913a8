"""CBAM: channel attention, spatial attention and their sequence (Woo et al., ECCV 2018, arXiv:1807.06521).

The equations (``docs/mechanisms.md#channel-and-spatial-attention``)::

    M_c(F) = σ(MLP(AvgPool(F)) + MLP(MaxPool(F)))     shared MLP C → C/r → C with ReLU
    M_s(F) = σ(conv7×7([mean_c(F); max_c(F)]))
    F'  = M_c(F) ⊙ F,   F'' = M_s(F') ⊙ F'           channel first

:class:`ChannelAttention` *is* timm's ``ChannelAttn`` (the same equation and parameters; the
tests check it against a hand evaluation), exposed under vlkit's name and arguments; both
blocks take their max-pool with ``max`` when a gradient is needed, whose backward is much
cheaper than the ``amax`` timm uses (:func:`_max_pool`). The paper's equation for ``M_s`` has no
normalisation; the authors' released code and timm's ``SpatialAttn`` put a BatchNorm between the
convolution and the sigmoid, ``M_s(F) = σ(BN(conv7×7(...)))``. :class:`SpatialAttention` gives
both (``norm``): without it, on features of a large scale (a pretrained backbone's late stages,
``max_c`` around 16) an Adam step of ``lr = 2e-3`` on the 49 weights that read ``max_c`` can move a
logit by up to about 1.6, and trained maps were seen to saturate to one value everywhere.

Every block maps ``(b, C, H, W) -> (b, C, H, W)`` and takes the channel count as its first
argument, so the classes can be handed to timm backbones as ``attn_layer`` (applied to the
residual branch before the addition).

Shape legend: ``b`` batch, ``C`` channels, ``H × W`` the feature map.
"""

from __future__ import annotations

import torch
from timm.layers.cbam import ChannelAttn
from torch import Tensor, nn

__all__ = ["CBAM", "ChannelAttention", "SpatialAttention"]


def _max_pool(x: Tensor, dim: int | tuple[int, int]) -> Tensor:
    """Max over ``dim`` (1: channels, ``(2, 3)``: the map) of ``(b, C, H, W)``, dims kept.

    Same values either way; the op depends on whether a gradient to ``x`` is needed.
    ``amax`` is the faster forward (about 4× at ``(64, 512, 14, 14)`` on one CPU thread) but
    its backward compares the whole input with the result and divides by the tie count, about
    15× slower than ``max``'s, which sends the gradient to the one index it found (on ties, to one
    of the tied positions instead of spreading it: both are subgradients of the max).
    """
    if not (torch.is_grad_enabled() and x.requires_grad):
        return x.amax(dim, keepdim=True)
    if isinstance(dim, tuple):  # the H × W map: one flattened axis
        return x.flatten(2).max(-1, keepdim=True).values.unsqueeze(-1)
    return x.max(dim, keepdim=True).values


def _check_map(x: Tensor, channels: int | None = None) -> None:
    if x.dim() != 4 or (channels is not None and x.shape[1] != channels):
        want = "(b, C, H, W)" if channels is None else f"(b, {channels}, H, W)"
        raise ValueError(f"expected a feature map {want}, got shape {tuple(x.shape)}")


class ChannelAttention(ChannelAttn):
    """CBAM channel attention ``M_c(F) = σ(MLP(AvgPool(F)) + MLP(MaxPool(F)))``.

    Woo, Park, Lee & Kweon, ECCV 2018, arXiv:1807.06521; it extends squeeze-and-excitation (Hu,
    Shen & Sun, CVPR 2018, arXiv:1709.01507).

    The shared MLP is ``C → C/r → C`` with ReLU, as 1×1 convolutions without bias (timm's
    ``ChannelAttn``, which this class is, with a cheaper max-pool backward).

    Args:
        channels: number of channels ``C`` (> 0).
        reduction: reduction ratio ``r`` (> 0); the hidden width is ``round(C / r)``, at least 1.
        act_layer: activation class of the MLP.
        device, dtype: where and in which dtype to create the parameters (timm's convention).

    Shapes:
        ``forward(x: (b, C, H, W)) -> (b, C, H, W)`` = ``M_c(x) ⊙ x``;
        ``attention_map(x) -> (b, C, 1, 1)`` in ``(0, 1)``.

    Raises:
        ValueError: non-positive sizes, or an input that is not ``(b, C, H, W)``.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        act_layer: type[nn.Module] = nn.ReLU,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if channels <= 0 or reduction <= 0:
            raise ValueError(f"need channels > 0 and reduction > 0, got {channels} and {reduction}")
        super().__init__(channels, rd_ratio=1.0 / reduction, act_layer=act_layer, device=device, dtype=dtype)
        self.channels = channels

    def attention_map(self, x: Tensor) -> Tensor:
        """``M_c(x)``: ``(b, C, H, W) -> (b, C, 1, 1)``."""
        _check_map(x, self.channels)
        avg = self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True))))  # MLP(AvgPool(F))
        mx = self.fc2(self.act(self.fc1(_max_pool(x, (2, 3)))))  # MLP(MaxPool(F))
        return self.gate(avg + mx)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention_map(x)


class SpatialAttention(nn.Module):
    """CBAM spatial attention ``M_s(F) = σ(conv([mean_c(F); max_c(F)]))`` (Woo et al., ECCV 2018,
    arXiv:1807.06521), or ``σ(BN(conv(...)))`` with ``norm=True``, as in the authors' released code.

    The normalised form standardises the logits over the batch and the map (batch statistics in
    training, running ones in eval mode), so the map's contrast between positions does not depend
    on the scale of the features it reads; its learned scale and shift can still flatten the map,
    but an optimiser step no longer moves every logit by the features' scale.

    Args:
        kernel_size: odd size of the convolution (7 in the paper); padding keeps ``H × W``.
        norm: put a ``BatchNorm2d(1)`` between the convolution (then without bias) and the sigmoid.
        device, dtype: where and in which dtype to create the parameters.

    Shapes:
        ``forward(x: (b, C, H, W)) -> (b, C, H, W)`` = ``M_s(x) ⊙ x``;
        ``attention_map(x) -> (b, 1, H, W)`` in ``(0, 1)``; ``descriptors(x) -> (b, 2, H, W)``.

    Raises:
        ValueError: an even or non-positive ``kernel_size``, or an input that is not 4-D; with
            ``norm=True`` in training mode, an input of one value per channel (``b·H·W == 1``),
            from which BatchNorm cannot take batch statistics.
    """

    def __init__(
        self,
        kernel_size: int = 7,
        norm: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if kernel_size <= 0 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
        factory = {"device": device, "dtype": dtype}
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=not norm, **factory)
        self.norm = nn.BatchNorm2d(1, **factory) if norm else nn.Identity()

    def descriptors(self, x: Tensor) -> Tensor:
        """``[mean_c(x); max_c(x)]``, what the convolution reads: ``(b, C, H, W) -> (b, 2, H, W)``."""
        _check_map(x)
        return torch.cat([x.mean(1, keepdim=True), _max_pool(x, 1)], dim=1)

    def attention_map(self, x: Tensor) -> Tensor:
        """``M_s(x)``: ``(b, C, H, W) -> (b, 1, H, W)``."""
        return torch.sigmoid(self.norm(self.conv(self.descriptors(x))))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.attention_map(x)


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo, Park, Lee & Kweon, ECCV 2018, arXiv:1807.06521).

    ``F' = M_c(F) ⊙ F``, then ``F'' = M_s(F') ⊙ F'`` (channel attention first).

    Inserted into a pretrained network, the plain block rescales every feature by ``M_c·M_s``
    (about 0.25 at initialisation, both maps starting near 0.5), which the layers after it were
    never trained for. With ``gate="zero"`` the block's change is gated by a learned scalar that
    starts at 0, ``F_out = F + g · (F'' − F)`` (as ReZero, Bachlechner et al., UAI 2021,
    arXiv:2003.04887), so the network starts exactly as it was and learns how much attention to
    apply; ``gate=None`` is the paper's plain block. An unbounded ``g`` can leave ``[0, 1]``: below
    0 the block amplifies features where its attention is low, ``F_out = (1 − g)·F + g·F''``, a
    gain rather than attention. ``gate="bounded"`` uses ``clamp(g, 0, 1)`` instead, so the block
    only attenuates, between the identity and the plain block; its gradient passes the clamp as if
    it were not there (straight-through), so a gate pushed below 0 (the block off) can come back.

    Args:
        channels: number of channels ``C``.
        reduction: channel-MLP reduction ratio ``r`` (16 in the paper).
        kernel_size: spatial convolution size (7 in the paper).
        gate: None (the plain block), ``"zero"`` (the zero-initialised residual gate above) or
            ``"bounded"`` (the same gate clamped to ``[0, 1]``).
        spatial_norm: a BatchNorm on the spatial logits, as in the authors' code
            (:class:`SpatialAttention`); off by default (the paper's equation).
        device, dtype: where and in which dtype to create the parameters (timm passes them
            when it builds ``attn_layer``).

    Shapes:
        ``forward(x: (b, C, H, W)) -> (b, C, H, W)``; ``spatial_map(x) -> (b, 1, H, W)`` is the
        spatial attention ``M_s(F')`` the forward pass applies (for visualisation).

    Raises:
        ValueError: bad sizes or inputs (see :class:`ChannelAttention`, :class:`SpatialAttention`),
            or an unknown ``gate``.
    """

    def __init__(
        self,
        channels: int,
        reduction: float = 16,
        kernel_size: int = 7,
        gate: str | None = None,
        spatial_norm: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if gate not in (None, "zero", "bounded"):
            raise ValueError(f"gate must be None (the plain block), 'zero' or 'bounded', got {gate!r}")
        self.channel = ChannelAttention(channels, reduction, device=device, dtype=dtype)
        self.spatial = SpatialAttention(kernel_size, norm=spatial_norm, device=device, dtype=dtype)
        self.gate_kind = gate
        self.gate = nn.Parameter(torch.zeros((), device=device, dtype=dtype)) if gate is not None else None

    def spatial_map(self, x: Tensor) -> Tensor:
        """``M_s(M_c(x) ⊙ x)``: ``(b, C, H, W) -> (b, 1, H, W)``."""
        return self.spatial.attention_map(self.channel(x))

    def forward(self, x: Tensor) -> Tensor:
        # module calls, so forward hooks on .channel / .spatial see each block's input and output
        out = self.spatial(self.channel(x))
        return out if self.gate is None else x + self.gate_value() * (out - x)

    def gate_value(self) -> Tensor:
        """The gate ``g`` the forward pass applies (a 0-d tensor; ``clamp(g, 0, 1)`` for ``"bounded"``).

        Raises:
            ValueError: the block has no gate (``gate=None``).
        """
        if self.gate is None:
            raise ValueError("this CBAM block has no gate (gate=None, the paper's plain block)")
        if self.gate_kind == "bounded":  # the value clamped, the gradient straight through
            return self.gate + (self.gate.clamp(0, 1) - self.gate).detach()
        return self.gate
