"""Finding, freezing and splitting the feature stages of a timm backbone by name."""

from __future__ import annotations

from torch import nn

__all__ = ["freeze_through", "module_path", "sequential_modules", "split_stages"]


def module_path(backbone: nn.Module, stage_name: str) -> str:
    """The attribute path of a timm feature stage (timm flattens dotted names in some wrappers)."""
    names = dict(backbone.named_modules())
    for candidate in (stage_name, stage_name.replace(".", "_")):
        if candidate in names:
            return candidate
    raise ValueError(f"timm feature stage {stage_name!r} not found in the backbone")


def freeze_through(backbone: nn.Module, stage_path: str) -> None:
    """Freeze every parameter registered up to and including the module ``stage_path``."""
    seen = False
    for name, module in backbone.named_modules():
        inside = name == stage_path or name.startswith(stage_path + ".")
        if seen and not inside:
            break
        seen = seen or inside
        for param in module.parameters(recurse=False):
            param.requires_grad_(False)


def sequential_modules(backbone: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The modules a timm ``features_only`` backbone runs one after another on its input, as
    ``(name, module)`` pairs in order, or None where the wrapper runs them otherwise.

    Running them in turn gives the backbone's last feature map, so the stages up to a point can
    run once (a frozen prefix, cached) and the rest on their output. Each feature stage's module
    name (``feature_info.module_name()``) is one of the names. Known wrappers: timm's
    ``FeatureListNet`` / ``FeatureDictNet`` (ResNets, ConvNeXts, RegNets, ...: its children in
    order) and the EfficientNet / MobileNetV3 feature extractors (the stem as one module named
    ``"bn1"``, the stem stage's name, then each block stage ``"blocks.i"``). Others (feature
    hooks, ``FeatureGetterNet``, gradient checkpointing) give None.
    """
    from timm.models import _features, efficientnet, mobilenetv3

    if getattr(backbone, "grad_checkpointing", False):
        return None
    if isinstance(backbone, _features.FeatureDictNet):
        return list(backbone.items())
    if isinstance(backbone, (efficientnet.EfficientNetFeatures, mobilenetv3.MobileNetV3Features)):
        if backbone.feature_hooks is not None:
            return None
        stem = [child for name, child in backbone.named_children() if name != "blocks"]
        return [("bn1", nn.Sequential(*stem))] + [(f"blocks.{i}", b) for i, b in enumerate(backbone.blocks)]
    return None


def split_stages(
    backbone: nn.Module, read_stage: str, frozen_stage: str | None = None
) -> tuple[list[tuple[str, nn.Module]] | None, list[nn.Module], list[nn.Module]]:
    """A ``features_only`` backbone's :func:`sequential_modules` split at two feature stages:
    ``(prefix, tail, unused)``: the ``(name, module)`` pairs through ``frozen_stage``, the modules
    after it through ``read_stage``, and the modules after ``read_stage``, which never reach the map
    read. Without ``frozen_stage``, or where the wrapper does not run its modules in sequence
    (nothing to split, nothing known to be unused), ``prefix`` is None and ``tail`` is empty."""
    modules = sequential_modules(backbone)
    if modules is None:
        return None, [], []
    names = [name for name, _ in modules]
    end = names.index(module_path(backbone, read_stage)) + 1
    unused = [module for _, module in modules[end:]]
    if frozen_stage is None:
        return None, [], unused
    cut = names.index(module_path(backbone, frozen_stage)) + 1
    return modules[:cut], [module for _, module in modules[cut:end]], unused
