"""What :class:`vlkit.vision.ImageEncoder` takes and gives: cached backbone features in place of
images, its output, and the check that what it reads is finite.

Shape legend: ``b`` batch, ``C`` backbone channels, ``h × w`` feature grid, ``n = h · w`` regions,
``d`` output width.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["BackboneFeatures", "ImageEncoderOutput", "check_finite"]


class BackboneFeatures(NamedTuple):
    """Precomputed output of a frozen backbone, given to :class:`ImageEncoder` in place of images.

    Made by :meth:`ImageEncoder.backbone_features` (e.g. once per image by a DataModule with
    ``cache_features=True``); the encoder then runs only its trainable part (``"output"``
    spatial transformer and CBAM, projection, normalisation, dropout) on them. A NamedTuple, so
    Lightning moves it to the device like any batch field.

    Attributes:
        feature_map: ``(b, C, h, w)`` (CNNs; ``(b, h, w, C)`` for channels-last backbones) or
            ``(b, prefix + n, C)`` (ViT tokens) float, as the backbone returned it.
    """

    feature_map: Tensor


class ImageEncoderOutput(NamedTuple):
    """Output of :class:`ImageEncoder`.

    Attributes:
        features: ``(b, n, d)`` region features, regions in row-major grid order.
        mask: ``(b, n)`` bool, True for every region (images have no padding); kept so that
            every encoder returns ``(features, mask)``.
        grid_size: ``(h, w)`` of the feature grid, ``h · w = n``.
        theta: ``(b, 2, 3)`` the spatial transformer's affine matrices when the encoder has
            one (``stn``), else None.
    """

    features: Tensor
    mask: Tensor
    grid_size: tuple[int, int]
    theta: Tensor | None = None


def check_finite(values: Tensor, name: str) -> Tensor:
    """Return ``values`` (a float tensor, batch first) if every entry is finite.

    Raises:
        ValueError: NaN or infinite entries; the message counts them and names the samples
            (first dimension) that hold them.
        RuntimeError: the same, under :func:`torch.compile`, where the check runs inside the
            graph (:func:`torch._assert_async`; reading it on the host would break the graph).
    """
    if torch.compiler.is_compiling():
        torch._assert_async(torch.isfinite(values).all(), f"{name} contain NaN or infinite values")
        return values
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = (~finite).flatten(1).any(1).nonzero().flatten().tolist() if values.dim() > 1 else []
        raise ValueError(
            f"{name} contain {int((~finite).sum())} NaN or infinite value(s)"
            + (f" in sample(s) {bad[:10]}{' ...' if len(bad) > 10 else ''}" if bad else "")
            + ": check how they were decoded, normalised or cached"
        )
    return values
