"""Vision modules: take images ``(b, 3, H, W)`` or feature maps ``(b, C, H, W)``."""

from vlkit.vision.cbam import CBAM, ChannelAttention, SpatialAttention
from vlkit.vision.encoder import ImageEncoder
from vlkit.vision.encoder_io import BackboneFeatures, ImageEncoderOutput
from vlkit.vision.factory import IMAGE_ENCODERS, ImageEncoderConfig
from vlkit.vision.pretrained import PACKAGED_WEIGHTS, packaged_weights_file
from vlkit.vision.stn import STN_TRANSFORMS, SpatialTransformer, SpatialTransformerOutput, theta_from_params

__all__ = [
    "CBAM",
    "IMAGE_ENCODERS",
    "PACKAGED_WEIGHTS",
    "STN_TRANSFORMS",
    "BackboneFeatures",
    "ChannelAttention",
    "ImageEncoder",
    "ImageEncoderConfig",
    "ImageEncoderOutput",
    "SpatialAttention",
    "SpatialTransformer",
    "SpatialTransformerOutput",
    "packaged_weights_file",
    "theta_from_params",
]
