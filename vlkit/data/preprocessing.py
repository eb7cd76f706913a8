"""How a model's inputs are prepared: image size and normalisation, and the text length.

A DataModule builds its transforms from a :class:`Preprocessing` and hands the same object to the
task (``vlkit fit`` links it), which saves it with the model: a checkpoint or an exported folder
prepares images for :meth:`predict` exactly as its training data was prepared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from vlkit.config import dataclass_from

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Preprocessing", "image_transform"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_transform(
    image_size: int,
    train: bool,
    augment: bool,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> v2.Compose:
    """torchvision transform: resize to ``image_size²``, optional horizontal flip, normalise.

    Accepts PIL images, ``(3, H, W)`` uint8 tensors (0–255) and float tensors in ``[0, 1]``;
    returns ``(3, image_size, image_size)`` float32, ``(x − mean) / std`` per channel.
    Only geometric augmentation is used: colour jitter would change the answer to colour
    questions.
    """
    steps: list = [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True)]
    if train and augment:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


@dataclass(frozen=True)
class Preprocessing:
    """How a task's inputs are prepared; saved with the model (its hyper-parameters).

    Args:
        image_size: images are resized to ``image_size × image_size`` pixels (>= 1).
        mean: per-channel mean subtracted after scaling pixels to ``[0, 1]`` (ImageNet's).
        std: per-channel standard deviation divided by (> 0; ImageNet's).
        max_text_length: questions or texts are cut to this many tokens (>= 1; captions: the
            most tokens of a training caption); None: not cut.

    Raises:
        ValueError: a value out of range (the message names it).
    """

    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    max_text_length: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.image_size < 1 or (self.max_text_length is not None and self.max_text_length < 1):
            raise ValueError(f"need image_size >= 1 and max_text_length None or >= 1; got {self}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values each, std > 0; got {self}")

    @classmethod
    def parse(cls, value: Preprocessing | Mapping[str, Any]) -> Preprocessing:
        """A :class:`Preprocessing` from itself or from its mapping (as saved in a checkpoint).

        Raises:
            TypeError: neither a Preprocessing nor a mapping.
            ValueError: a mapping with unknown keys or values out of range.
        """
        return dataclass_from(cls, value, "preprocessing")

    def image_transform(self, train: bool = False, augment: bool = False) -> v2.Compose:
        """The image transform (see :func:`image_transform`); flips only with ``train and augment``."""
        return image_transform(self.image_size, train, augment, self.mean, self.std)
