"""Vision modules: take images ``(b, 3, H, W)``."""

from vlkit.vision.encoder import ImageEncoder, ImageEncoderOutput

__all__ = ["ImageEncoder", "ImageEncoderOutput"]
