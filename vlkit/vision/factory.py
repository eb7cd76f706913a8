"""Image encoders by name: the configuration of a model's image part."""

from __future__ import annotations

from vlkit.config import PartConfig, Registry
from vlkit.vision.encoder import ImageEncoder

__all__ = ["IMAGE_ENCODERS", "ImageEncoderConfig"]

#: Image encoders by name: ``"timm"`` is :class:`vlkit.vision.ImageEncoder` (any timm backbone,
#: with optional CBAM and spatial-transformer blocks).
IMAGE_ENCODERS = Registry("image_encoder")
IMAGE_ENCODERS.register("timm", ImageEncoder)


class ImageEncoderConfig(PartConfig):
    """An image encoder: its name in :data:`IMAGE_ENCODERS` (``"timm"``, the default) and every
    argument of :class:`vlkit.vision.ImageEncoder` (``backbone``, ``dim``, ``feature_index``,
    ``pretrained`` / ``pretrained_file`` / ``packaged_weights``, ``freeze``, ``cbam``, ``stn``, ...).

    From YAML: ``{backbone: efficientnet_lite0, packaged_weights: true, freeze: true,
    feature_index: 3, dim: 256}``. A task rebuilding a checkpoint builds it with the weight
    options off (the weights are in the checkpoint).

    Raises:
        ValueError: an argument the encoder does not take or a value of the wrong type (the
            message lists what is valid).
    """

    registry = IMAGE_ENCODERS
    default_name = "timm"

    def without_pretrained_weights(self) -> ImageEncoderConfig:
        """This configuration with ``pretrained``, ``pretrained_file`` and ``packaged_weights``
        off: the same architecture, random weights (to be replaced by a checkpoint's)."""
        return self.replace(pretrained=False, pretrained_file=None, packaged_weights=False)
