"""Spatial Transformer Network (Jaderberg, Simonyan, Zisserman & Kavukcuoglu, NeurIPS 2015, arXiv:1506.02025).

Three parts (``docs/mechanisms.md#spatial-transformer``): a **localisation network** regresses the
transform θ from the input U; the **grid generator** maps each output coordinate ``(x_t, y_t)``
(normalised to ``[-1, 1]``) to a source coordinate ``(x_s, y_s)ᵀ = θ (x_t, y_t, 1)ᵀ``; the
**sampler** fills the output V from U by bilinear interpolation
(:func:`torch.nn.functional.affine_grid` + :func:`torch.nn.functional.grid_sample`). θ starts
at the identity, so an untrained STN returns its input.

Transforms: ``"affine"`` (6 parameters, θ is any 2×3 matrix), ``"attention"`` (3
parameters, isotropic scale ``s`` and translation ``t``: θ = [[s, 0, t_x], [0, s, t_y]]; the
paper's restricted "attention" transform, a crop-and-zoom) and ``"translation"`` (2 parameters:
a window of fixed scale ``s`` at position ``p ∈ [−1, 1]²``, ``t = (1 − s) · p``, which keeps it
inside the input; the regressor gives ``p = tanh(r)``; a glimpse whose only freedom is where it
looks). :class:`SaliencyLocalization` gives ``p`` directly, as the expected position of a softmax
over a feature map's cells.

Shape legend: ``b`` batch, ``C`` channels, ``H × W`` input, ``H' × W'`` output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "STN_TRANSFORMS",
    "FeatureMapLocalization",
    "SaliencyLocalization",
    "SpatialTransformer",
    "SpatialTransformerOutput",
    "theta_from_params",
]

#: Number of regressed parameters per transform kind.
STN_TRANSFORMS = {"affine": 6, "attention": 3, "translation": 2}


def _initial_params(transform: str, scale: float) -> list[float]:
    """The regressed parameters of a centred window of side ``scale`` (1: the identity)."""
    return {
        "affine": [scale, 0.0, 0.0, 0.0, scale, 0.0],
        "attention": [scale, 0.0, 0.0],
        "translation": [0.0, 0.0],
    }[transform]


class SpatialTransformerOutput(NamedTuple):
    """Output of :class:`SpatialTransformer`.

    Attributes:
        output: ``(b, C, H', W')`` the resampled input V.
        theta: ``(b, 2, 3)`` the affine matrices used (source = θ · (target, 1)).
    """

    output: Tensor
    theta: Tensor


def theta_from_params(params: Tensor, transform: str, scale: float = 1.0) -> Tensor:
    """Build ``(b, 2, 3)`` θ from regressed parameters: ``(b, 6)`` affine, ``(b, 3)`` = (s, t_x,
    t_y) for ``"attention"``, or ``(b, 2)`` = the position (p_x, p_y) for ``"translation"``,
    whose window has the fixed side ``scale`` (a fraction of the input's, in ``(0, 1]``) and the
    translation ``t = (1 − scale) · p``, with ``p`` clamped to ``[−1, 1]``: at ±1 the window lies
    on the input's edge, so it never leaves the input.

    Raises:
        ValueError: unknown transform, parameters of the wrong width, or a ``"translation"``
            scale outside ``(0, 1]``.
    """
    if transform not in STN_TRANSFORMS:
        raise ValueError(f"unknown transform {transform!r}; valid: {sorted(STN_TRANSFORMS)}")
    if params.dim() != 2 or params.shape[1] != STN_TRANSFORMS[transform]:
        raise ValueError(
            f"a {transform!r} transform takes (b, {STN_TRANSFORMS[transform]}) parameters, "
            f"got {tuple(params.shape)}"
        )
    if transform == "affine":
        return params.view(-1, 2, 3)
    if transform == "translation":
        if not 0 < scale <= 1:
            raise ValueError(f"a 'translation' window's scale must be in (0, 1], got {scale}")
        tx, ty = ((1 - scale) * params.clamp(-1, 1)).unbind(1)
        side = torch.full_like(tx, scale)
    else:
        side, tx, ty = params.unbind(1)
    zero = torch.zeros_like(side)
    return torch.stack([torch.stack([side, zero, tx], 1), torch.stack([zero, side, ty], 1)], 1)


def _default_localization(in_channels: int, width: int) -> nn.Sequential:
    """A small conv net ``(b, C, H, W) -> (b, 16·width)``; works for any ``H, W >= 1``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
    )


def _frozen_map(features: Callable[[Tensor], Tensor], image: Tensor, size: tuple[int, int] | None) -> Tensor:
    """``features`` of ``image`` resized to ``size`` (bilinear, antialiased; as it is when None),
    without gradients: the fixed map a localisation network reads, ``(b, C, h, w)``."""
    with torch.no_grad():
        view = image
        if size is not None and tuple(image.shape[-2:]) != size:
            view = F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)
        return features(view)


class FeatureMapLocalization(nn.Module):
    """A localisation network that reads a fixed feature extractor on a low-resolution view:
    ``(b, 3, H, W) -> (b, 16 · 4 · 4)``.

    The image is resized to ``size`` (bilinear, antialiased; as it is when None), ``features``
    maps it to ``(b, C, h, w)`` without gradients (e.g. a frozen pretrained backbone, as the
    ImageNet-pretrained localisation networks of Jaderberg et al.'s CUB-200 transformers, NeurIPS
    2015, arXiv:1506.02025), and a trained 1 × 1 convolution to 16 channels, ReLU and 4 × 4
    average pooling give the regressor's input. ``features`` is held as a function, not a
    submodule, so the extractor's weights stay with their owner (one copy in a state dict).

    Args:
        features: ``(b, 3, h', w') float -> (b, C, h, w)``.
        channels: ``C``.
        size: ``(H', W')`` of the view, or None.
    """

    width, pooled = 16, 4

    def __init__(
        self, features: Callable[[Tensor], Tensor], channels: int, size: tuple[int, int] | None
    ) -> None:
        super().__init__()
        self._features, self.size = features, size
        self.dim = self.width * self.pooled**2
        self.head = nn.Sequential(
            nn.Conv2d(channels, self.width, 1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(self.pooled),
            nn.Flatten(),
        )

    def forward(self, image: Tensor) -> Tensor:
        fmap = _frozen_map(self._features, image, self.size)  # (b, C, h, w)
        return self.head(fmap.float())  # (b, 16 · 4 · 4)


class SaliencyLocalization(nn.Module):
    """Where to look, as the expected position of a softmax over a fixed feature map's cells:
    ``(b, 3, H, W) -> (b, 2)`` positions in ``[−1, 1]`` (x, y), for a ``"translation"`` window.

    The image is resized to ``size`` (bilinear, antialiased; as it is when None), ``features``
    maps it to ``(b, C, h, w)`` without gradients (a frozen pretrained backbone), a trained
    1 × 1 convolution scores each cell, ``a = softmax(score)`` over the ``h·w`` cells, and
    ``p = Σ_i a_i c_i`` with the cells' centres ``c_i`` spread over ``[−1, 1]`` (the corner
    cells at ±1). The score starts at 0, so the window starts on the centre. A cell's score
    depends only on what is there, not on where, so the localisation cannot learn one place for
    every image: it moves the window only towards content that scores high (the soft-argmax of
    keypoint localisation; compare the attention glimpses of Ba, Mnih & Kavukcuoglu, ICLR 2015,
    arXiv:1412.7755). ``features`` is held as a function, not a submodule, so the extractor's
    weights stay with their owner.

    Args:
        features: ``(b, 3, h', w') float -> (b, C, h, w)``.
        channels: ``C``.
        size: ``(H', W')`` of the view, or None.

    Shapes:
        ``forward(image (b, 3, H, W)) -> (b, 2)``; ``attention(image) -> (b, h, w)`` is ``a``.
    """

    def __init__(
        self, features: Callable[[Tensor], Tensor], channels: int, size: tuple[int, int] | None
    ) -> None:
        super().__init__()
        self._features, self.size = features, size
        self.score = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def attention(self, image: Tensor) -> Tensor:
        """``a``: ``(b, h, w)``, each map summing to 1."""
        fmap = _frozen_map(self._features, image, self.size)  # (b, C, h, w)
        score = self.score(fmap.float())  # (b, 1, h, w)
        return score.flatten(1).softmax(1).view(score.shape[0], *score.shape[2:])

    def forward(self, image: Tensor) -> Tensor:
        a = self.attention(image)  # (b, h, w)
        h, w = a.shape[1:]
        ys = torch.linspace(-1, 1, h, device=a.device) if h > 1 else a.new_zeros(1)
        xs = torch.linspace(-1, 1, w, device=a.device) if w > 1 else a.new_zeros(1)
        return torch.stack([(a.sum(1) * xs).sum(1), (a.sum(2) * ys).sum(1)], 1)  # (b, 2) = (x, y)


class SpatialTransformer(nn.Module):
    """Spatial transformer module (Jaderberg et al., NeurIPS 2015, arXiv:1506.02025).

    ``θ = regressor(localization(U))``, ``V = grid_sample(U, affine_grid(θ))``. At
    initialisation the regressor's weights are 0 and its bias gives a centred window of side
    ``init_scale``: the identity transform by default, so an untrained STN returns its input.

    Args:
        in_channels: channels ``C`` of the input.
        transform: ``"affine"`` (full 2×3), ``"attention"`` (isotropic scale + translation) or
            ``"translation"`` (a window of side ``init_scale`` that moves, kept inside the input).
        init_scale: θ at initialisation is a centred window of this side (a fraction of the
            input's, in ``(0, 1]``); 1 (default) is the identity. Below 1 the transform starts as a
            zoom on the centre: the gradient that reaches θ through bilinear sampling is local, and
            it can move a window that already holds part of an object, where it cannot make a
            small object stand out of a view of the whole input.
        output_size: ``(H', W')`` of the output; None keeps the input size.
        localization: a module ``(b, C, H, W) -> (b, localization_dim)``; None builds a small
            conv net (two 3×3 convolutions of ``width`` channels, 4×4 adaptive pooling).
        localization_dim: output width of a custom ``localization`` (required with one, unless
            ``localization_gives_params``).
        localization_gives_params: the localisation net gives the transform's parameters itself
            (e.g. :class:`SaliencyLocalization`, ``(b, 2)`` positions for ``"translation"``), and
            no regressor is built.
        width: channels of the default localisation net.
        hidden_dim: hidden width of the regressor MLP ``localization_dim → hidden_dim → #params``.
        align_corners: passed to ``affine_grid`` / ``grid_sample`` (False: -1 and 1 are the
            outer edges of the corner pixels).

    Shapes:
        ``forward(x: (b, C, H, W) float) -> SpatialTransformerOutput(output (b, C, H', W'),
        theta (b, 2, 3))``. ``transform_with(x, theta)`` resamples with a given θ.

    Raises:
        ValueError: unknown transform, bad sizes, a custom localisation net without its
            width, or an input that is not ``(b, C, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        transform: str = "affine",
        output_size: tuple[int, int] | None = None,
        localization: nn.Module | None = None,
        localization_dim: int | None = None,
        width: int = 16,
        hidden_dim: int = 32,
        align_corners: bool = False,
        init_scale: float = 1.0,
        localization_gives_params: bool = False,
    ) -> None:
        super().__init__()
        if transform not in STN_TRANSFORMS:
            raise ValueError(f"unknown transform {transform!r}; valid: {sorted(STN_TRANSFORMS)}")
        if not 0 < init_scale <= 1:
            raise ValueError(f"init_scale must be in (0, 1] (1 is the identity), got {init_scale}")
        if transform == "translation" and init_scale == 1:
            raise ValueError(
                "a 'translation' window of init_scale 1 covers the whole input and cannot move; "
                "give init_scale < 1 (e.g. 0.5), or use the 'attention' or 'affine' transform"
            )
        if in_channels <= 0 or width <= 0 or hidden_dim <= 0:
            raise ValueError(
                f"need in_channels, width and hidden_dim > 0, got {in_channels}, {width}, {hidden_dim}"
            )
        if output_size is not None and (len(output_size) != 2 or min(output_size) <= 0):
            raise ValueError(f"output_size must be (H', W') with positive sizes, got {output_size}")
        if localization_gives_params and localization is None:
            raise ValueError("localization_gives_params needs the localization net that gives them")
        if localization is not None and localization_dim is None and not localization_gives_params:
            raise ValueError("a custom localization net needs localization_dim (the width of its output)")
        self.in_channels, self.transform, self.init_scale = in_channels, transform, init_scale
        self.output_size = None if output_size is None else tuple(output_size)
        self.align_corners = align_corners
        if localization is None:
            localization, localization_dim = _default_localization(in_channels, width), 16 * width
        self.localization = localization
        self.regressor = None
        if not localization_gives_params:
            self.regressor = nn.Sequential(
                nn.Linear(localization_dim, hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, STN_TRANSFORMS[transform]),
            )
            nn.init.zeros_(self.regressor[-1].weight)  # θ starts at a centred window (the identity at 1)
            with torch.no_grad():
                self.regressor[-1].bias.copy_(torch.tensor(_initial_params(transform, init_scale)))

    def transform_with(self, x: Tensor, theta: Tensor) -> Tensor:
        """Resample ``x (b, C, H, W)`` with a given ``theta (b, 2, 3)``: the grid generator and sampler.

        The grid holds real coordinates, so it is built and sampled in at least float32, also
        under autocast (which would build it in bf16 and round coordinates in [−1, 1] to steps
        of up to 2⁻⁸, ~0.4 px on a 224-px image); the output has the dtype of ``x``.
        """
        if theta.shape != (x.shape[0], 2, 3):
            raise ValueError(f"theta must be (b, 2, 3) = ({x.shape[0]}, 2, 3), got {tuple(theta.shape)}")
        size = self.output_size or tuple(x.shape[-2:])
        compute_dtype = torch.promote_types(x.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            grid = F.affine_grid(theta.to(compute_dtype), [x.shape[0], x.shape[1], *size], self.align_corners)
            out = F.grid_sample(
                x.to(compute_dtype),
                grid,
                mode="bilinear",
                padding_mode="zeros",
                align_corners=self.align_corners,
            )  # (b, C, H', W')
        return out.to(x.dtype)

    def forward(self, x: Tensor) -> SpatialTransformerOutput:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (b, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        features = self.localization(x)  # (b, localization_dim)
        # θ maps real coordinates: regress it in the regressor's own precision, not in
        # autocast's bf16 (which resolves entries near 1 only to steps of 2⁻⁸ to 2⁻⁷)
        with torch.autocast(x.device.type, enabled=False):
            if self.regressor is None:
                params = features.float()
            else:
                params = self.regressor(features.to(self.regressor[0].weight.dtype))
                if self.transform == "translation":
                    params = torch.tanh(params)  # the window's position, in (-1, 1)
        theta = theta_from_params(params, self.transform, self.init_scale)  # (b, 2, 3)
        return SpatialTransformerOutput(self.transform_with(x, theta), theta)
