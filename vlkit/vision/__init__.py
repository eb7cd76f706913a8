"""Vision modules: take images ``(b, 3, H, W)``."""

from vlkit.vision.encoder import ImageEncoder, ImageEncoderOutput
from vlkit.vision.pretrained import PACKAGED_WEIGHTS, packaged_weights_file

__all__ = ["PACKAGED_WEIGHTS", "ImageEncoder", "ImageEncoderOutput", "packaged_weights_file"]
