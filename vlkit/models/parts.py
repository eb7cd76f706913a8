"""Parts shared by the registered model builders."""

from __future__ import annotations

from vlkit.vision import ImageEncoder

__all__ = ["build_image_encoder"]


def build_image_encoder(
    backbone: str,
    dim: int,
    feature_index: int,
    pretrained: bool,
    pretrained_file: str | None,
    packaged_weights: bool,
    freeze_backbone: bool | int,
    cbam: str | None,
    stn: str | int | None,
) -> ImageEncoder:
    """The :class:`vlkit.vision.ImageEncoder` of a registered model builder, from its arguments
    (the builders name the ``freeze`` argument ``freeze_backbone``)."""
    return ImageEncoder(
        backbone,
        dim,
        feature_index=feature_index,
        pretrained=pretrained,
        pretrained_file=pretrained_file,
        packaged_weights=packaged_weights,
        freeze=freeze_backbone,
        cbam=cbam,
        stn=stn,
    )
