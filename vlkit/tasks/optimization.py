"""How every task trains: AdamW with a linear warm-up then cosine decay, stepped every batch, with
per-part learning-rate ratios (image backbone, text encoder, layer-wise decay)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from vlkit.config import dataclass_from
from vlkit.vision import CBAM, SpatialTransformer

__all__ = ["Optimization", "adamw", "delayed", "lr_scales", "parameter_groups", "warmup_cosine"]


@dataclass(frozen=True)
class Optimization:
    """The optimiser and learning-rate schedule of a task (AdamW, Loshchilov & Hutter, ICLR 2019,
    arXiv:1711.05101; warm-up then cosine decay, Loshchilov & Hutter, ICLR 2017, arXiv:1608.03983).

    Args:
        lr: peak learning rate (> 0).
        weight_decay: AdamW weight decay (>= 0), applied to weight matrices and convolution kernels,
            not to biases and normalisation parameters.
        warmup_fraction: fraction of all training steps spent warming up linearly, in ``[0, 1)``.
        min_lr_ratio: final learning rate as a fraction of ``lr``, in ``[0, 1]``.
        backbone_lr_ratio: learning rate of the image backbone (``model.image_encoder.backbone``)
            as a fraction of ``lr``, in ``[0, 1]`` (e.g. 0.1 to fine-tune pretrained weights
            gently; 0 keeps its weights fixed while BatchNorm statistics still update).
        text_lr_ratio: learning rate of the text encoder (``model.text_encoder``) as a fraction of
            ``lr``, in ``[0, 1]`` (e.g. 0.1 to fine-tune a pretrained encoder while the fusion and
            head train at ``lr``).
        attention_lr_ratio: learning rate of the CBAM blocks of the image encoder (with their
            gates), as a fraction of ``lr`` (>= 0); it replaces ``backbone_lr_ratio`` for CBAM
            blocks inside the backbone, so they train even in a frozen or slowly tuned backbone.
        localization_lr_ratio: learning rate of the spatial transformers' localisation networks
            (and their regressors) as a fraction of ``lr`` (>= 0); spatial transformers are
            usually trained with a lower rate than the rest (Jaderberg et al., 2015), e.g. 0.1.
        localization_start_fraction: fraction of all training steps, in ``[0, 1)``, before the
            localisation networks start to train: until then θ stays at its initialisation (the
            identity transform) while the rest of the model learns on the untransformed input;
            then their rate warms up linearly over ``warmup_fraction`` of the steps. 0 (default):
            they train from the first step with everything else.
        attention_start_fraction: the same for the image encoder's CBAM blocks, in ``[0, 1)``:
            until then a zero-gated block keeps its gate at 0 (the encoder's output unchanged)
            while the rest of the model learns; 0 (default): they train from the first step.

    Raises:
        ValueError: a value out of range (the message names it).
    """

    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.01
    backbone_lr_ratio: float = 1.0
    text_lr_ratio: float = 1.0
    attention_lr_ratio: float = 1.0
    localization_lr_ratio: float = 1.0
    localization_start_fraction: float = 0.0
    attention_start_fraction: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "lr > 0": self.lr > 0,
            "weight_decay >= 0": self.weight_decay >= 0,
            "0 <= warmup_fraction < 1": 0 <= self.warmup_fraction < 1,
            "0 <= min_lr_ratio <= 1": 0 <= self.min_lr_ratio <= 1,
            "0 <= backbone_lr_ratio <= 1": 0 <= self.backbone_lr_ratio <= 1,
            "0 <= text_lr_ratio <= 1": 0 <= self.text_lr_ratio <= 1,
            "attention_lr_ratio >= 0": self.attention_lr_ratio >= 0,
            "localization_lr_ratio >= 0": self.localization_lr_ratio >= 0,
            "0 <= localization_start_fraction < 1": 0 <= self.localization_start_fraction < 1,
            "0 <= attention_start_fraction < 1": 0 <= self.attention_start_fraction < 1,
        }
        failed = [rule for rule, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"optimization needs {', '.join(failed)}; got {self}")

    @classmethod
    def parse(cls, value: Optimization | Mapping[str, Any] | None) -> Optimization:
        """An :class:`Optimization` from itself, its mapping (as saved in a checkpoint) or None
        (the defaults).

        Raises:
            TypeError: neither an Optimization, a mapping nor None.
            ValueError: a mapping with unknown keys (the message lists the fields) or a value out
                of range.
        """
        return dataclass_from(cls, value, "optimization")


def _inserted_blocks(
    model: nn.Module, optimization: Optimization
) -> Iterator[tuple[nn.Module, float, float]]:
    """The CBAM blocks and spatial transformers of ``model.image_encoder``, each with its
    learning-rate ratio and start fraction: ``attention_lr_ratio`` and ``attention_start_fraction``
    for CBAM, ``localization_lr_ratio`` and ``localization_start_fraction`` for an STN."""
    image_encoder = getattr(model, "image_encoder", None)
    for module in image_encoder.modules() if image_encoder is not None else ():
        if isinstance(module, CBAM):
            yield module, optimization.attention_lr_ratio, optimization.attention_start_fraction
        elif isinstance(module, SpatialTransformer):
            yield module, optimization.localization_lr_ratio, optimization.localization_start_fraction


def lr_scales(model: nn.Module, optimization: Optimization) -> dict[int, float]:
    """Learning-rate multiplier of each parameter (by ``id``) that does not train at ``lr``.

    The image backbone (``model.image_encoder.backbone``) trains at ``backbone_lr_ratio``, the text
    encoder (``model.text_encoder``) at ``text_lr_ratio``, the image encoder's CBAM blocks at
    ``attention_lr_ratio`` and its spatial transformers at ``localization_lr_ratio``, and any submodule with an
    ``lr_scales()`` method (e.g. :class:`vlkit.text.HFTextEncoder` with layer-wise decay)
    multiplies its parameters' rates by the scales it returns (``{parameter name: scale}``).
    """
    scales: dict[int, float] = {}

    def scale(module: nn.Module | None, ratio: float) -> None:
        for p in module.parameters() if module is not None else ():
            scales[id(p)] = scales.get(id(p), 1.0) * ratio

    image_encoder = getattr(model, "image_encoder", None)
    scale(getattr(image_encoder, "backbone", None), optimization.backbone_lr_ratio)
    scale(getattr(model, "text_encoder", None), optimization.text_lr_ratio)
    for module, ratio, _ in _inserted_blocks(model, optimization):  # their own rate, whatever the backbone's
        scales.update({id(p): ratio for p in module.parameters()})
    for module in model.modules():
        if callable(getattr(module, "lr_scales", None)):
            named = dict(module.named_parameters())
            for name, factor in module.lr_scales().items():
                scales[id(named[name])] = scales.get(id(named[name]), 1.0) * factor
    return {key: value for key, value in scales.items() if value != 1.0}


def parameter_groups(module: nn.Module, model: nn.Module, optimization: Optimization) -> list[dict]:
    """AdamW parameter groups of ``module``'s trainable parameters: one per (learning-rate scale,
    decayed or not, start), highest rate first; see :func:`lr_scales` (of ``model``) and
    :class:`Optimization` (weight decay on tensors of 2 or more dimensions only). Each group's
    ``"start_fraction"`` is the fraction of the steps before it starts to train: 0, or
    :attr:`Optimization.localization_start_fraction` for the image encoder's spatial transformers
    and :attr:`Optimization.attention_start_fraction` for its CBAM blocks (which get groups of
    their own only when that fraction is > 0, so older checkpoints resume as saved)."""
    scales = lr_scales(model, optimization)
    starts = {
        id(p): start
        for block, _, start in _inserted_blocks(model, optimization)
        if start > 0
        for p in block.parameters()
    }
    groups: dict[tuple[float, bool, float], list] = {}
    for p in module.parameters():
        if p.requires_grad:
            groups.setdefault((scales.get(id(p), 1.0), p.dim() >= 2, starts.get(id(p), 0.0)), []).append(p)
    return [
        {
            "params": params,
            "lr": optimization.lr * factor,
            "weight_decay": optimization.weight_decay if decay else 0.0,
            "start_fraction": start,
        }
        for (factor, decay, start), params in sorted(
            groups.items(), key=lambda item: (-item[0][0], item[0][1], item[0][2])
        )
    ]


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float, start_ratio: float = 1e-3) -> float:
    """Learning-rate factor: linear warm-up from ``start_ratio`` to 1 over ``warmup`` steps,
    then cosine decay to ``min_ratio`` at step ``total`` (Loshchilov & Hutter, ICLR 2017).

    The same factor multiplies every parameter group's learning rate.
    """
    if step < warmup:
        return start_ratio + (1.0 - start_ratio) * step / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def delayed(factor: float, step: int, start: int, warmup: int) -> float:
    """``factor`` held at 0 before step ``start``, then ramped linearly to itself over ``warmup``
    steps: the schedule of parameters that start training late."""
    if step < start:
        return 0.0
    return factor * min(1.0, (step - start + 1) / max(warmup, 1))


def adamw(module: nn.Module, model: nn.Module, optimization: Optimization) -> torch.optim.AdamW:
    """AdamW over :func:`parameter_groups`."""
    return torch.optim.AdamW(parameter_groups(module, model, optimization), lr=optimization.lr)
