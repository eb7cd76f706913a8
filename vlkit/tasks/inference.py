"""Raw inputs to model inputs for the tasks' ``predict``: images and texts, one or a batch."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from vlkit.data.images import load_image
from vlkit.data.preprocessing import Preprocessing

__all__ = ["ImageInput", "as_list", "image_batch", "in_eval_mode", "require_preprocessing", "row_attention"]

#: One image for ``predict``: a file path, a PIL image, or a ``(3, H, W)`` tensor (uint8 0–255 or
#: float in ``[0, 1]``, RGB, not normalised).
ImageInput = str | os.PathLike | Image.Image | Tensor


def as_list(values: Any, name: str) -> list:
    """``values`` as a list: a sequence stays as it is, a single item becomes a one-item list (a
    ``(b, 3, H, W)`` tensor becomes ``b`` images).

    Raises:
        ValueError: an empty batch.
    """
    if isinstance(values, Tensor) and values.dim() == 4:
        values = list(values)
    elif isinstance(values, str | os.PathLike | Image.Image | Tensor) or not isinstance(values, Sequence):
        values = [values]
    values = list(values)
    if not values:
        raise ValueError(f"no {name} given: predict takes one or a list of them")
    return values


def require_preprocessing(preprocessing: Preprocessing | None) -> Preprocessing:
    """The task's preprocessing, which raw inputs need.

    Raises:
        ValueError: the task has none (built in Python without it).
    """
    if preprocessing is None:
        raise ValueError(
            "this task has no preprocessing, so it cannot prepare raw images: build it with "
            "preprocessing=datamodule.preprocessing (vlkit fit does), or give Preprocessing(image_size=...)"
        )
    return preprocessing


def _image(value: ImageInput, preprocessing: Preprocessing) -> Tensor:
    if isinstance(value, Tensor):
        if value.dim() != 3 or value.shape[0] != 3:
            raise ValueError(f"an image tensor must be (3, H, W) RGB, got shape {tuple(value.shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError("the image tensor has NaN or infinite values")
        if value.is_floating_point() and (value.min() < 0 or value.max() > 1):
            raise ValueError(
                "a float image tensor must hold values in [0, 1] (not normalised; predict normalises it), "
                f"got values in [{float(value.min()):.3g}, {float(value.max()):.3g}]"
            )
        return preprocessing.image_transform()(value)
    if isinstance(value, str | os.PathLike) and not os.path.isfile(value):
        raise FileNotFoundError(f"image {os.fspath(value)!r} does not exist")
    return preprocessing.image_transform()(
        load_image(os.fspath(value) if not isinstance(value, Image.Image) else value)
    )


def image_batch(images: ImageInput | Sequence[ImageInput], preprocessing: Preprocessing | None) -> Tensor:
    """``(b, 3, S, S)`` float32: the images resized and normalised as the task's training data was.

    Args:
        images: one image or a list (paths, PIL images, tensors; see :data:`ImageInput`), or a
            ``(b, 3, H, W)`` tensor.
        preprocessing: the task's (``image_size`` = ``S``, mean and std).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: no preprocessing, an empty list, or a tensor of the wrong shape or range.
        OSError: a file that cannot be decoded as an image.
    """
    preprocessing = require_preprocessing(preprocessing)
    return torch.stack([_image(image, preprocessing) for image in as_list(images, "image")])


def in_eval_mode(module: Any, run: Callable[[], Any]) -> Any:
    """``run()`` with ``module`` in eval mode (no dropout, fixed BatchNorm statistics); the module's
    training mode is restored afterwards, also if ``run`` raises."""
    was_training = module.training
    module.eval()
    try:
        return run()
    finally:
        module.train(was_training)


def row_attention(output: Any, row: int, length: int, wanted: bool) -> dict[str, Tensor | None]:
    """``{"image_weights": (n,), "text_weights": (length,)}`` of example ``row`` of a model output
    with ``image_weights (b, n)`` and ``text_weights (b, l)`` (float32 on the CPU; None where the
    output has none or ``wanted`` is false)."""
    image = getattr(output, "image_weights", None)
    text = getattr(output, "text_weights", None)
    return {
        "image_weights": image[row].float().cpu() if wanted and image is not None else None,
        "text_weights": text[row, :length].float().cpu() if wanted and text is not None else None,
    }
