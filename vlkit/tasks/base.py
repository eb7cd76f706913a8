"""What every task shares: the arguments every task takes, the training loop's guards and logs,
self-contained checkpoints and ``save_pretrained`` folders.

A task is built from plain, typed configuration (its model's part configurations, the
:class:`Optimization`, the :class:`vlkit.data.Preprocessing`, the vocabularies), which it saves
as its hyper-parameters, so a checkpoint or an exported folder rebuilds it
(:meth:`TrainingTask.from_checkpoint`, :meth:`TrainingTask.from_pretrained`) with two explicit
arguments and nothing hidden: ``pretrained=False`` (the weights come from the checkpoint) and
``local_files`` (the saved configuration and tokenizer files of its Hugging Face parts).
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import pytorch_lightning as pl
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor

from vlkit.attention import hard_attention_loss
from vlkit.config import to_plain
from vlkit.data.batching import SkippedBatch
from vlkit.data.preprocessing import Preprocessing
from vlkit.tasks.optimization import Optimization, adamw, delayed, warmup_cosine
from vlkit.tasks.saving import REBUILD_ARGUMENTS, SelfContainedTask

__all__ = ["NONFINITE_LOSS_POLICIES", "REBUILD_ARGUMENTS", "TrainingTask"]

log = logging.getLogger(__name__)

#: What ``on_nonfinite_loss`` may be: stop training, or skip the optimiser step.
NONFINITE_LOSS_POLICIES = ("error", "skip")


class TrainingTask(
    SelfContainedTask,  # first: its checkpoint hooks override LightningModule's empty ones
    pl.LightningModule,
    PyTorchModelHubMixin,
    ABC,
    library_name="vlkit",
    tags=["vision-language", "vlkit"],
):
    """Base LightningModule of the vlkit tasks.

    Every task takes, besides its model's part configurations and vocabularies:

    Args:
        preprocessing: how inputs are prepared (:class:`vlkit.data.Preprocessing`: image size,
            normalisation, text length), or its mapping; ``vlkit fit`` links it from the
            DataModule. Saved with the model and used by :meth:`predict`; None only for a
            task that will not predict from raw images.
        optimization: the optimiser and schedule (:class:`vlkit.tasks.Optimization`: AdamW,
            warm-up then cosine decay, per-part learning-rate ratios), or its mapping.
        on_nonfinite_loss: a NaN or infinite training loss stops training with a
            :class:`FloatingPointError` naming the global step, epoch and batch (``"error"``),
            or skips that optimiser step (``"skip"``, counted as ``train/nonfinite_skipped``);
            a finite loss whose gradients are not finite (e.g. a 0/0 in some backward) gets the
            same treatment before the optimiser can write NaN into the weights (an error naming
            the parameters, or ``train/nonfinite_grad_skipped``; see
            :meth:`guard_nonfinite_gradients`); in a distributed run every process takes the same
            decision.
        pretrained: build the parts with the pretrained weights their configurations name
            (image backbone, Hugging Face encoder); False when a checkpoint's weights replace
            them (:meth:`from_checkpoint` does this). Not saved.
        local_files: ``{Hugging Face name: local folder}`` of saved configuration and tokenizer
            files to build Hugging Face parts from (as a checkpoint carries them). Not saved.

    Checkpoints also carry the random state (torch CPU and CUDA, Python, NumPy) of the process
    that saved them, restored when ``fit`` resumes from one, so a resumed run draws the same
    dropout masks as an uninterrupted one.

    Subclasses hold ``self.model``, set :attr:`task_name`, call :meth:`save_configuration` in
    ``__init__`` and implement ``_step(batch, split)``, which the training, validation and test
    steps call, and :meth:`predict`.

    Raises:
        ValueError: an unknown ``on_nonfinite_loss`` or invalid ``optimization`` /
            ``preprocessing`` values.
    """

    #: ``vlkit_task`` in checkpoints and ``task`` in ``vlkit.json``.
    task_name: ClassVar[str] = ""
    #: ``(metric, "max" | "min")``: the validation metric that picks the best checkpoint.
    monitor: ClassVar[tuple[str, str] | None] = None

    def __init__(
        self,
        preprocessing: Preprocessing | Mapping[str, Any] | None = None,
        optimization: Optimization | Mapping[str, Any] | None = None,
        on_nonfinite_loss: str = "error",
        pretrained: bool = True,
        local_files: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        if on_nonfinite_loss not in NONFINITE_LOSS_POLICIES:
            raise ValueError(
                f"on_nonfinite_loss must be one of {list(NONFINITE_LOSS_POLICIES)}, got {on_nonfinite_loss!r}"
            )
        self.preprocessing = None if preprocessing is None else Preprocessing.parse(preprocessing)
        self.optimization = Optimization.parse(optimization)
        self.on_nonfinite_loss = on_nonfinite_loss
        self.pretrained, self.local_files = pretrained, dict(local_files or {})
        self._hf_files_cache: dict[str, dict[str, bytes]] | None = None  # see hf_files
        self._skipped_this_epoch: dict[str, int] = {}  # split: unreadable samples, reported at its end

    def save_configuration(self) -> None:
        """Save the calling ``__init__``'s arguments as hyper-parameters, in plain data (part
        configurations and dataclasses as mappings with every field), without
        :data:`REBUILD_ARGUMENTS`. The caller parses its part configurations into its arguments
        first, so that what is saved is complete."""
        self.save_hyperparameters(ignore=list(REBUILD_ARGUMENTS), frame=inspect.currentframe().f_back)
        plain = {key: to_plain(value) for key, value in self.hparams.items()}
        # every field, as parsed here (not the mapping given): a later vlkit's defaults cannot change it
        plain["optimization"] = to_plain(self.optimization)
        plain["preprocessing"] = to_plain(self.preprocessing)
        self._set_hparams(plain)
        self._hparams_initial = copy.deepcopy(self._hparams)

    # -- the training loop ---------------------------------------------------------------------
    @abstractmethod
    def _step(self, batch, split: str) -> Tensor:
        """Loss of one batch of ``split`` (``"train"``, ``"val"`` or ``"test"``), metrics logged."""

    @abstractmethod
    def predict(self, *args: Any, **kwargs: Any) -> list:
        """Predictions for a batch of raw inputs (see each task)."""

    def training_step(self, batch, batch_idx: int) -> Tensor | None:
        if isinstance(batch, SkippedBatch):
            return self.skip_batch(batch, "train")
        return self.guard_nonfinite_loss(self._step(batch, "train"), batch_idx)

    def validation_step(self, batch, batch_idx: int) -> Tensor | None:
        return self.skip_batch(batch, "val") if isinstance(batch, SkippedBatch) else self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> Tensor | None:
        return (
            self.skip_batch(batch, "test") if isinstance(batch, SkippedBatch) else self._step(batch, "test")
        )

    def setup(self, stage: str) -> None:
        """Give the model's image encoder to a DataModule that caches backbone features
        (``cache_features: true``, or ``"auto"`` with a frozen backbone), which computes them once,
        before its loaders are made."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        mode = getattr(datamodule, "cache_features", False)
        if mode and hasattr(datamodule, "cache_image_features"):
            encoder = getattr(self.model, "image_encoder", None)
            if mode == "auto" and not getattr(encoder, "cacheable", False):
                log.info(
                    "cache_features: auto: reading images (no image encoder whose frozen backbone can be cached)"
                )
                return
            if encoder is None:
                raise ValueError("cache_features needs a model with an image encoder; this one has none")
            trainer, device = self.trainer, self.trainer.strategy.root_device
            # in a distributed run process 0 computes the features and the others then load them
            if trainer.is_global_zero:
                datamodule.cache_image_features(encoder, device)
            trainer.strategy.barrier("vlkit_feature_cache")
            if not trainer.is_global_zero:
                datamodule.cache_image_features(encoder, device)

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
        if self.on_nonfinite_loss == "skip":
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
        if self.on_nonfinite_loss == "skip":
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

    # -- optimiser and schedule ----------------------------------------------------------------
    def configure_optimizers(self):
        optimizer = adamw(self, self.model, self.optimization)
        starts = [group.get("start_fraction", 0.0) for group in optimizer.param_groups]
        schedules = {start: self._lr_factor_function(start) for start in sorted(set(starts))}
        # one function for every group, or one per group where some start late
        factor = schedules[0.0] if set(starts) == {0.0} else [schedules[start] for start in starts]
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _lr_factor_function(self, start_fraction: float = 0.0):
        """The schedule's ``step -> factor``, which asks the trainer for the number of steps only
        once training runs (step > 0; every schedule starts at the same factor). With
        ``start_fraction > 0``, the factor is 0 for that fraction of the steps, then warms up
        (:func:`vlkit.tasks.optimization.delayed`).

        Asking in ``configure_optimizers`` would make Lightning build the training loader before it
        restores a checkpoint, so a resumed run would not get the loader's saved position
        (Lightning issue #20550) and would replay the epoch from its first batch.
        """
        schedule = None
        min_ratio, warmup_fraction = self.optimization.min_lr_ratio, self.optimization.warmup_fraction

        def factor(step: int) -> float:
            nonlocal schedule
            if step == 0:
                return 0.0 if start_fraction > 0 else warmup_cosine(0, warmup=1, total=2, min_ratio=min_ratio)
            if schedule is None:
                total = max(int(self.trainer.estimated_stepping_batches), 2)
                warmup = min(max(int(total * warmup_fraction), 1), total - 1)
                schedule = functools.partial(warmup_cosine, warmup=warmup, total=total, min_ratio=min_ratio)
                if start_fraction > 0:
                    main, start = schedule, int(total * start_fraction)

                    def late_schedule(step: int) -> float:
                        return delayed(main(step), step, start, warmup)

                    schedule = late_schedule
            return schedule(step)

        return factor
