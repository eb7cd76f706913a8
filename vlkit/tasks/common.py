"""What every task shares: the optimiser and schedule, argument checks, skipped-sample logs."""

from __future__ import annotations

import functools
import logging
import math
from abc import ABC, abstractmethod

import pytorch_lightning as pl
import torch
from torch import Tensor

from vlkit.attention import hard_attention_loss

__all__ = ["TrainingTask", "warmup_cosine"]

log = logging.getLogger(__name__)


class TrainingTask(pl.LightningModule, ABC):
    """Base LightningModule of the vlkit tasks: AdamW with warm-up and cosine decay.

    Subclasses hold ``self.model`` (whose ``image_encoder.backbone``, if any, can train at
    ``backbone_lr_ratio`` of the learning rate; see :meth:`lr_scale_of_parameters`) and save
    ``lr``, ``weight_decay``, ``warmup_fraction``, ``min_lr_ratio`` and ``backbone_lr_ratio``
    (and optionally ``text_lr_ratio``) as hyper-parameters (checked by :meth:`check_optimizer_args`).
    They implement ``_step(batch, split)``, which the training, validation and test steps call.
    """

    @staticmethod
    def check_optimizer_args(
        lr: float, warmup_fraction: float, min_lr_ratio: float, backbone_lr_ratio: float
    ) -> None:
        """Raise ValueError unless ``lr > 0`` and the three ratios are in range."""
        if (
            lr <= 0
            or not 0 <= warmup_fraction < 1
            or not 0 <= min_lr_ratio <= 1
            or not 0 <= backbone_lr_ratio <= 1
        ):
            raise ValueError(
                "need lr > 0, 0 <= warmup_fraction < 1, 0 <= min_lr_ratio <= 1 and 0 <= backbone_lr_ratio <= 1"
            )

    @abstractmethod
    def _step(self, batch, split: str) -> Tensor:
        """Loss of one batch of ``split`` (``"train"``, ``"val"`` or ``"test"``), metrics logged."""

    def training_step(self, batch, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> Tensor:
        return self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> Tensor:
        return self._step(batch, "test")

    def log_loss(self, split: str, loss: Tensor, batch_size: int) -> None:
        """Log ``<split>/loss``: per step and epoch in training, per epoch (synced) otherwise."""
        on_step = split == "train"
        self.log(
            f"{split}/loss",
            loss,
            batch_size=batch_size,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            sync_dist=not on_step,
        )

    def add_hard_attention_loss(self, total: Tensor, reward: Tensor) -> Tensor:
        """``total`` plus the REINFORCE loss of the model's hard attention, if any is waiting.

        Args:
            total: the loss so far (scalar).
            reward: ``(b,)`` per-sample reward (treated as a constant), e.g. the negative
                per-sample loss: ``log p(y | s, x)`` as in Xu et al. (ICML 2015).
        """
        policy = hard_attention_loss(self.model, reward.detach())
        if policy is None:
            return total
        self.log("train/policy_loss", policy, batch_size=reward.shape[0], on_step=True, on_epoch=True)
        return total + policy

    def log_skipped(self, split: str, num_skipped: int) -> None:
        """Log ``<split>/skipped`` (summed over the epoch) and warn about unreadable samples."""
        self.log(
            f"{split}/skipped",
            float(num_skipped),
            batch_size=1,
            on_step=False,
            on_epoch=True,
            reduce_fx="sum",
            sync_dist=True,
        )
        if num_skipped:
            log.warning("%s: %d unreadable sample(s) skipped in this batch", split, num_skipped)

    def lr_scale_of_parameters(self) -> dict[int, float]:
        """Learning-rate multiplier of each parameter (by ``id``) that does not train at ``lr``.

        The image backbone (``model.image_encoder.backbone``) trains at ``backbone_lr_ratio``,
        the text encoder (``model.text_encoder``) at ``text_lr_ratio`` when the task has that
        hyper-parameter, and any submodule with an ``lr_scales()`` method (e.g.
        :class:`vlkit.text.HFTextEncoder` with layer-wise decay) multiplies its parameters'
        rates by the scales it returns (``{parameter name: scale}``).
        """
        scales: dict[int, float] = {}

        def scale(module: torch.nn.Module | None, ratio: float) -> None:
            for p in module.parameters() if module is not None else ():
                scales[id(p)] = scales.get(id(p), 1.0) * ratio

        image_encoder = getattr(self.model, "image_encoder", None)
        scale(getattr(image_encoder, "backbone", None), self.hparams.backbone_lr_ratio)
        scale(getattr(self.model, "text_encoder", None), self.hparams.get("text_lr_ratio", 1.0))
        for module in self.model.modules():
            if callable(getattr(module, "lr_scales", None)):
                named = dict(module.named_parameters())
                for name, factor in module.lr_scales().items():
                    scales[id(named[name])] = scales.get(id(named[name]), 1.0) * factor
        return {key: value for key, value in scales.items() if value != 1.0}

    def configure_optimizers(self):
        scales = self.lr_scale_of_parameters()
        groups: dict[tuple[float, bool], list] = {}
        for p in self.parameters():
            if p.requires_grad:
                # weight decay on weight matrices and conv kernels, not on biases and norm parameters
                groups.setdefault((scales.get(id(p), 1.0), p.dim() >= 2), []).append(p)
        optimizer = torch.optim.AdamW(
            [
                {
                    "params": params,
                    "lr": self.hparams.lr * factor,
                    "weight_decay": self.hparams.weight_decay if decay else 0.0,
                }
                for (factor, decay), params in sorted(
                    groups.items(), key=lambda item: (-item[0][0], item[0][1])
                )
            ],
            lr=self.hparams.lr,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 2)
        warmup = min(max(int(total * self.hparams.warmup_fraction), 1), total - 1)
        schedule = functools.partial(
            warmup_cosine, warmup=warmup, total=total, min_ratio=self.hparams.min_lr_ratio
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float, start_ratio: float = 1e-3) -> float:
    """Learning-rate factor: linear warm-up from ``start_ratio`` to 1 over ``warmup`` steps,
    then cosine decay to ``min_ratio`` at step ``total`` (Loshchilov & Hutter, ICLR 2017).

    The same factor multiplies every parameter group's learning rate.
    """
    if step < warmup:
        return start_ratio + (1.0 - start_ratio) * step / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
