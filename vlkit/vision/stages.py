"""Finding and freezing the feature stages of a timm backbone by name."""

from __future__ import annotations

from torch import nn

__all__ = ["freeze_through", "module_path"]


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
