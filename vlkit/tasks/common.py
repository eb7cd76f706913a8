"""What every task shares: the optimiser and schedule, argument checks, skipped-sample logs,
the non-finite loss guard and the random state saved in checkpoints."""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import random
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from huggingface_hub import PyTorchModelHubMixin, snapshot_download
from torch import Tensor

from vlkit.attention import hard_attention_loss
from vlkit.data.common import SkippedBatch
from vlkit.text.hf import HFTextEncoder

__all__ = ["NONFINITE_LOSS_POLICIES", "TrainingTask", "warmup_cosine"]

log = logging.getLogger(__name__)

#: What ``on_nonfinite_loss`` may be: stop training, or skip the optimiser step.
NONFINITE_LOSS_POLICIES = ("error", "skip")


class TrainingTask(
    pl.LightningModule,
    PyTorchModelHubMixin,
    ABC,
    library_name="vlkit",
    tags=["vision-language", "vlkit"],
):
    """Base LightningModule of the vlkit tasks: AdamW with warm-up and cosine decay.

    Subclasses hold ``self.model`` (whose ``image_encoder.backbone``, if any, can train at
    ``backbone_lr_ratio`` of the learning rate; see :meth:`lr_scale_of_parameters`) and save
    ``lr``, ``weight_decay``, ``warmup_fraction``, ``min_lr_ratio`` and ``backbone_lr_ratio``
    (and optionally ``text_lr_ratio``) as hyper-parameters (checked by :meth:`check_optimizer_args`).
    They implement ``_step(batch, split)``, which the training, validation and test steps call.

    Two reliability guards live here:

    - a training loss that is NaN or infinite stops training with a :class:`FloatingPointError`
      naming the global step, epoch and batch, or — with the hyper-parameter
      ``on_nonfinite_loss="skip"`` — skips that optimiser step (counted as
      ``train/nonfinite_skipped``); a finite loss whose gradients are not finite (e.g. a 0/0 in
      some backward) gets the same treatment before the optimiser can write NaN into the weights:
      an error naming the step and the parameters, or the step skipped (a warning and
      ``train/nonfinite_grad_skipped``; see :meth:`guard_nonfinite_gradients`); in a distributed
      run every process takes the same decision;
    - checkpoints carry the random state (torch CPU and CUDA, Python, NumPy) of the process
      that saved them, restored when ``fit`` resumes from one, so a resumed run draws the same
      dropout masks as an uninterrupted one.
    """

    def __init__(self) -> None:
        super().__init__()
        #: The DataModule settings that prepare inputs (``image_size``, text lengths), saved by
        #: :meth:`save_pretrained` in ``vlkit.json``; set when the task is loaded from a checkpoint
        #: or a saved folder, else read from the trainer's DataModule.
        self.data_settings: dict[str, Any] | None = None
        self._hf_files_cache: dict[str, dict[str, bytes]] | None = None  # see _hf_files
        self._skipped_this_epoch: dict[str, int] = {}  # split: unreadable samples, reported at its end

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

    @staticmethod
    def check_nonfinite_policy(on_nonfinite_loss: str) -> None:
        """Raise ValueError unless ``on_nonfinite_loss`` is one of :data:`NONFINITE_LOSS_POLICIES`."""
        if on_nonfinite_loss not in NONFINITE_LOSS_POLICIES:
            raise ValueError(
                f"on_nonfinite_loss must be one of {list(NONFINITE_LOSS_POLICIES)}, got {on_nonfinite_loss!r}"
            )

    @abstractmethod
    def _step(self, batch, split: str) -> Tensor:
        """Loss of one batch of ``split`` (``"train"``, ``"val"`` or ``"test"``), metrics logged."""

    def training_step(self, batch, batch_idx: int) -> Tensor | None:
        if isinstance(batch, SkippedBatch):
            return self.skip_batch(batch, "train")
        return self.guard_nonfinite_loss(self._step(batch, "train"), batch_idx)

    def skip_batch(self, batch: SkippedBatch, split: str) -> Tensor | None:
        """Count a batch whose every image was unreadable (``on_bad_sample="skip"``) and skip it:
        None, or in distributed training, where every process must run backward, a zero loss
        (zero gradients: only AdamW's momentum and weight decay move the weights that step)."""
        self.log_skipped(split, batch.num_skipped)
        trainer = self._trainer
        if split == "train" and trainer is not None and trainer.world_size > 1:
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        return None

    def guard_nonfinite_loss(self, loss: Tensor, batch_idx: int) -> Tensor | None:
        """``loss`` if it is finite (on every process); otherwise raise, or return None to skip the step.

        Raises:
            FloatingPointError: a NaN or infinite loss with ``on_nonfinite_loss="error"``
                (the default); the message names the global step, epoch and batch index.
        """
        finite = bool(torch.isfinite(loss).all())
        trainer = self._trainer
        if trainer is not None and trainer.world_size > 1:  # every process must skip or raise together
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return loss
        where = f"global step {self.global_step} (epoch {self.current_epoch}, batch {batch_idx})"
        value = float(loss.detach().float().sum())
        if self.hparams.get("on_nonfinite_loss", "error") == "skip":
            log.warning(
                "training loss %s at %s: optimiser step skipped (on_nonfinite_loss=skip)", value, where
            )
            self.log(
                "train/nonfinite_skipped", 1.0, batch_size=1, on_step=False, on_epoch=True, reduce_fx="sum"
            )
            return None
        raise FloatingPointError(
            f"training loss is {value} at {where}. Lower the learning rate, clip gradients "
            "(--trainer.gradient_clip_val), train in 32-true precision, check the batch for bad values, "
            "or set on_nonfinite_loss: skip to skip such steps"
        )

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.guard_nonfinite_gradients(optimizer)

    def guard_nonfinite_gradients(self, optimizer: torch.optim.Optimizer) -> bool:
        """Refuse an optimiser step whose gradients are NaN or infinite, although the loss was finite.

        Lightning calls it (through ``on_before_optimizer_step``) after backward, after the
        gradients were unscaled and before clipping and the step. It follows
        ``on_nonfinite_loss``: ``"skip"`` drops every gradient (``optimizer.zero_grad(set_to_none=True)``,
        so AdamW leaves every weight and its moments as they are), logs a warning naming the global
        step and the parameters, and counts the step in ``train/nonfinite_grad_skipped`` (summed over
        the epoch). With fp16 mixed precision the ``GradScaler`` already skips such steps (and lowers
        its scale), so nothing is checked.

        Returns:
            True if the gradients are finite (on every process) or not checked, False if the step
            was skipped.

        Raises:
            FloatingPointError: non-finite gradients with ``on_nonfinite_loss="error"``; the message
                names the global step, the epoch and the first parameters concerned.
        """
        trainer = self._trainer
        if trainer is not None and getattr(trainer.precision_plugin, "scaler", None) is not None:
            return True
        grads = [
            p.grad.detach() for group in optimizer.param_groups for p in group["params"] if p.grad is not None
        ]
        grads = [g for g in grads if g.numel()]
        finite = not grads or bool(
            torch.isfinite(torch.stack([torch.linalg.vector_norm(g, float("inf")) for g in grads]).amax())
        )
        if trainer is not None and trainer.world_size > 1:  # every process must skip or raise together
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return True
        names = [
            name
            for name, p in self.named_parameters()
            if p.grad is not None and not bool(torch.isfinite(p.grad).all())
        ]
        listed = f"{names[:5]}{' ...' if len(names) > 5 else ''}" if names else "(on another process)"
        where = f"global step {self.global_step} (epoch {self.current_epoch})"
        if self.hparams.get("on_nonfinite_loss", "error") == "skip":
            log.warning(
                "non-finite gradients at %s though the loss was finite, in %d parameter(s) %s: optimiser step "
                "skipped (on_nonfinite_loss=skip)",
                where,
                len(names),
                listed,
            )
            optimizer.zero_grad(set_to_none=True)
            self.log(
                "train/nonfinite_grad_skipped",
                1.0,
                batch_size=1,
                on_step=False,
                on_epoch=True,
                reduce_fx="sum",
            )
            return False
        raise FloatingPointError(
            f"gradients are NaN or infinite at {where} although the loss is finite, in {len(names)} "
            f"parameter(s) {listed}. Lower the learning rate, clip gradients (--trainer.gradient_clip_val), "
            "train in 32-true precision, or set on_nonfinite_loss: skip to skip such steps"
        )

    #: ``vlkit_task`` in checkpoints, which :func:`vlkit.checkpoint.load_task` reads.
    task_name: str = ""

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add what makes the checkpoint self-contained and resumable: the task's name, the
        configuration and tokenizer files of its Hugging Face parts (:func:`vlkit.checkpoint.hf_files`)
        and the random state."""
        checkpoint["vlkit_task"] = self.task_name
        checkpoint["vlkit_hf_files"] = self._hf_files()
        checkpoint["vlkit_rng_states"] = _rng_states()

    # -- save_pretrained / from_pretrained (Hugging Face conventions) -------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        """``model.safetensors`` (the weights, by the mixin), and beside ``config.json`` (the
        constructor's arguments: model name and arguments, vocabularies) ``vlkit.json`` (the task
        and the data settings) and ``hf/<i>/`` (configuration and tokenizer files of the
        Hugging Face parts, named in ``vlkit.json``)."""
        super()._save_pretrained(save_directory)
        settings = self.data_settings
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if settings is None and datamodule is not None:
            settings = dict(datamodule.hparams)
        keep = ("image_size", "max_question_length", "max_caption_length", "max_text_length")
        hf_folders = {}
        for i, (name, files) in enumerate(self._hf_files().items()):
            folder = Path(save_directory) / "hf" / str(i)
            folder.mkdir(parents=True, exist_ok=True)
            for file_name, data in files.items():
                (folder / file_name).write_bytes(data)
            hf_folders[name] = f"hf/{i}"
        info = {
            "task": self.task_name,
            "data": {k: v for k, v in (settings or {}).items() if k in keep},
            "hf_files": hf_folders,
        }
        (Path(save_directory) / "vlkit.json").write_text(json.dumps(info, indent=1))

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ):
        """The task saved by :meth:`save_pretrained` in a folder or a Hub repository, rebuilt
        from it alone (see :mod:`vlkit.checkpoint`), in eval mode.

        Raises:
            ValueError: the folder was saved by another task class.
        """
        from vlkit.checkpoint import rebuilding_from_checkpoint

        folder = (
            model_id
            if os.path.isdir(model_id)
            else snapshot_download(
                repo_id=model_id,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
        )
        info = json.loads((Path(folder) / "vlkit.json").read_text())
        if info["task"] != cls.task_name:
            raise ValueError(f"{model_id!r} holds a {info['task']!r} task; load it with that task's class")
        files = {
            name: {p.name: p.read_bytes() for p in (Path(folder) / sub).iterdir() if p.is_file()}
            for name, sub in info["hf_files"].items()
        }
        with rebuilding_from_checkpoint(files):
            task = super()._from_pretrained(
                model_id=folder,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
                map_location=map_location,
                strict=strict,
                **model_kwargs,
            )
        task.data_settings = info["data"]
        task._hf_files_cache = files  # saved again as they came, without fetching anything
        return task.eval()

    def _hf_files(self) -> dict[str, dict[str, bytes]]:
        if self._hf_files_cache is None:
            names = {m.name_or_path for m in self.modules() if isinstance(m, HFTextEncoder)}
            if self.hparams.get("tokenizer_name"):
                names.add(self.hparams.tokenizer_name)
            if names:
                from vlkit.checkpoint import hf_files

                self._hf_files_cache = hf_files(names)
            else:
                self._hf_files_cache = {}
        return self._hf_files_cache

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        trainer = self._trainer
        if "vlkit_rng_states" in checkpoint and trainer is not None and trainer.state.fn == "fit":
            _set_rng_states(checkpoint["vlkit_rng_states"])

    def validation_step(self, batch, batch_idx: int) -> Tensor | None:
        return self.skip_batch(batch, "val") if isinstance(batch, SkippedBatch) else self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> Tensor | None:
        return (
            self.skip_batch(batch, "test") if isinstance(batch, SkippedBatch) else self._step(batch, "test")
        )

    def log_loss(self, split: str, loss: Tensor, batch_size: int) -> None:
        """Log ``<split>/loss``: per step and epoch in training, per epoch (synced) otherwise.

        The synced epoch value is the mean over the samples of all processes, also when they
        evaluated unequal numbers of samples.
        """
        on_step = split == "train"
        self.log(
            f"{split}/loss",
            loss,
            # a float: Lightning (2.6, issue #21859) averages the processes' sums of batch sizes in their
            # dtype when it syncs a mean, and an integer average rounds down (23 samples on 2 processes
            # give 11, and a loss 23/22 too large)
            batch_size=batch_size if on_step else float(batch_size),
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
            counts = self._skipped_this_epoch
            counts[split] = counts.get(split, 0) + num_skipped

    def _report_skipped(self, split: str) -> None:
        """At the end of an epoch: one warning with the number of ``split`` samples skipped in it."""
        skipped = self._skipped_this_epoch.pop(split, 0)
        if skipped:
            log.warning(
                "%s, epoch %d: %d unreadable sample(s) skipped in this epoch (on_bad_sample=skip; "
                "the warnings above name their rows; logged as %s/skipped)",
                split,
                self.current_epoch,
                skipped,
                split,
            )

    def on_train_epoch_end(self) -> None:
        self._report_skipped("train")

    def on_validation_epoch_end(self) -> None:
        self._report_skipped("val")

    def on_test_epoch_end(self) -> None:
        self._report_skipped("test")

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
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor_function())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _lr_factor_function(self):
        """The schedule's ``step -> factor``, which asks the trainer for the number of steps only
        once training runs (step > 0; every schedule starts at the same factor).

        Asking in ``configure_optimizers`` would make Lightning build the training loader before it
        restores a checkpoint, so a resumed run would not get the loader's saved position
        (Lightning issue #20550) and would replay the epoch from its first batch.
        """
        schedule = None

        def factor(step: int) -> float:
            nonlocal schedule
            if step == 0:
                return warmup_cosine(0, warmup=1, total=2, min_ratio=self.hparams.min_lr_ratio)
            if schedule is None:
                total = max(int(self.trainer.estimated_stepping_batches), 2)
                warmup = min(max(int(total * self.hparams.warmup_fraction), 1), total - 1)
                schedule = functools.partial(
                    warmup_cosine, warmup=warmup, total=total, min_ratio=self.hparams.min_lr_ratio
                )
            return schedule(step)

        return factor


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float, start_ratio: float = 1e-3) -> float:
    """Learning-rate factor: linear warm-up from ``start_ratio`` to 1 over ``warmup`` steps,
    then cosine decay to ``min_ratio`` at step ``total`` (Loshchilov & Hutter, ICLR 2017).

    The same factor multiplies every parameter group's learning rate.
    """
    if step < warmup:
        return start_ratio + (1.0 - start_ratio) * step / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _rng_states() -> dict[str, Any]:
    """This process's random states, as types ``torch.load(weights_only=True)`` reads."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(tuple(states["python"][:1]) + (tuple(states["python"][1]),) + tuple(states["python"][2:]))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
