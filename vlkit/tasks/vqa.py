"""The VQA LightningModule: loss, metrics, optimiser and schedule."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vlkit.data.vqa import VQABatch
from vlkit.metrics import ExactMatchAccuracy, VQAAccuracy
from vlkit.models import VQAOutput, create_model, list_models
from vlkit.tasks.common import TrainingTask

__all__ = ["VQATask"]

log = logging.getLogger(__name__)
_SPLITS = ("train", "val", "test")


class VQATask(TrainingTask):
    """Trains a registered VQA model (SPEC.md section 5).

    Loss: cross-entropy on the answer index when each question has one answer; binary
    cross-entropy on the soft scores ``min(#annotators / 3, 1)`` when it has several
    (Teney et al., CVPR 2018, arXiv:1708.02711), summed over answers and averaged over the
    batch. A model with hard attention trained by REINFORCE (``hard_attention="reinforce"``)
    adds the score-function loss of :func:`vlkit.attention.hard_attention_loss` with reward
    ``−loss`` per sample, logged as ``train/policy_loss``. Logged per split (``train``/``val``/``test``): ``loss``, ``vqa_acc``,
    ``exact_match`` and ``skipped`` (unreadable samples). ``vqa_acc`` is the official VQA accuracy
    (:class:`vlkit.metrics.VQAAccuracy`: normalised answers, mean over the leave-one-out subsets of
    the human answers), not the soft training target. Optimiser: AdamW with a linear
    warm-up then cosine decay, stepped every batch; the image backbone can train at a fraction
    of the learning rate (``backbone_lr_ratio``).

    The vocabularies are hyper-parameters, so a checkpoint alone rebuilds the model and
    answers questions (``vlkit predict``).

    Args:
        model: name of a registered VQA model (``vlkit.models.list_models("vqa_*")``).
        model_args: keyword overrides for the model builder (e.g. ``{dim: 512}``).
        vocabulary: question vocabulary (set from the DataModule by the CLI).
        answers: answer vocabulary (set from the DataModule by the CLI).
        multi_answer: whether training rows have several answers (set from the DataModule);
            only changes how :meth:`answer` turns logits into probabilities (sigmoid vs softmax).
        lr: peak learning rate (> 0).
        weight_decay: AdamW weight decay, applied to weight matrices only.
        warmup_fraction: fraction of all training steps spent warming up, in ``[0, 1)``.
        min_lr_ratio: final learning rate as a fraction of ``lr``, in ``[0, 1]``.
        backbone_lr_ratio: learning rate of the image backbone as a fraction of ``lr``, in
            ``[0, 1]`` (e.g. 0.1 to fine-tune pretrained weights gently; 0 keeps the backbone
            weights fixed, while BatchNorm statistics still update).
        on_nonfinite_loss: a NaN or infinite training loss, or NaN or infinite gradients of a
            finite one, stop training with an error naming the step (``"error"``) or skip that
            optimiser step (``"skip"``, counted as ``train/nonfinite_skipped`` or
            ``train/nonfinite_grad_skipped``); see :class:`vlkit.tasks.TrainingTask`.

    Raises:
        ValueError: unknown model name, missing vocabularies, or out-of-range settings.
    """

    task_name = "vqa"

    def __init__(
        self,
        model: str = "vqa_parallel_coattn_small",
        model_args: dict[str, Any] | None = None,
        vocabulary: list[str] | None = None,
        answers: list[str] | None = None,
        multi_answer: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        backbone_lr_ratio: float = 1.0,
        on_nonfinite_loss: str = "error",
    ) -> None:
        super().__init__()
        if model not in list_models("vqa_*"):
            raise ValueError(f"unknown VQA model {model!r}; registered: {list_models('vqa_*')}")
        if not vocabulary or not answers:
            raise ValueError(
                "VQATask needs the question vocabulary and the answer list; `vlkit fit` links them from "
                "the DataModule, in Python pass vocabulary=dm.vocabulary, answers=dm.answers"
            )
        self.check_optimizer_args(lr, warmup_fraction, min_lr_ratio, backbone_lr_ratio)
        self.check_nonfinite_policy(on_nonfinite_loss)
        self.save_hyperparameters()
        self.model = create_model(
            model, num_answers=len(answers), vocab_size=len(vocabulary), **(model_args or {})
        )
        # one metric object per split; keys get a suffix because "train" is an nn.Module method name
        self.vqa_acc = torch.nn.ModuleDict({f"{s}_": VQAAccuracy() for s in _SPLITS})
        self.exact_match = torch.nn.ModuleDict({f"{s}_": ExactMatchAccuracy() for s in _SPLITS})

    @property
    def answers(self) -> list[str]:
        return self.hparams.answers

    def forward(self, image: Tensor, question_ids: Tensor, question_mask: Tensor | None = None) -> VQAOutput:
        return self.model(image, question_ids, question_mask)

    def sample_losses(self, logits: Tensor, batch: VQABatch) -> tuple[Tensor, Tensor]:
        """Per-sample losses ``(b,)`` and the batch loss: cross-entropy on ``label`` (one answer;
        rows labelled -100 count 0 and are left out of the mean) or BCE on the soft ``scores``
        summed over answers (several)."""
        if batch.multi_answer:
            per_sample = F.binary_cross_entropy_with_logits(logits, batch.scores, reduction="none").sum(-1)
            return per_sample, per_sample.mean()
        per_sample = F.cross_entropy(logits, batch.label, ignore_index=-100, reduction="none")
        return per_sample, per_sample.sum() / (batch.label != -100).sum().clamp_min(1)

    def loss(self, logits: Tensor, batch: VQABatch) -> Tensor:
        """The batch loss (see :meth:`sample_losses`)."""
        return self.sample_losses(logits, batch)[1]

    def _step(self, batch: VQABatch, split: str) -> Tensor:
        logits = self(batch.image, batch.question_ids, batch.question_mask).logits  # (b, K)
        per_sample, loss = self.sample_losses(logits, batch)
        total = loss
        if split == "train":
            # hard attention trained by REINFORCE: reward = log p(y | s, x) = -loss (Xu et al. 2015)
            total = self.add_hard_attention_loss(loss, -per_sample)
        preds = logits.argmax(-1)
        self.vqa_acc[f"{split}_"](preds, batch.accuracy)
        self.exact_match[f"{split}_"](preds, batch.label)
        size = logits.shape[0]
        self.log_loss(split, loss, size)
        for name, metric in (("vqa_acc", self.vqa_acc), ("exact_match", self.exact_match)):
            self.log(
                f"{split}/{name}",
                metric[f"{split}_"],
                batch_size=size,
                on_step=False,
                on_epoch=True,
                prog_bar=name == "vqa_acc",
            )
        self.log_skipped(split, batch.num_skipped)
        return total

    @torch.no_grad()
    def answer(self, image: Tensor, question_ids: Tensor, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top-k answers with probabilities for a batch: ``(b, 3, H, W), (b, l) -> b lists of (answer, p)``."""
        logits = self(image, question_ids, question_ids != 0).logits
        probs = logits.sigmoid() if self.hparams.multi_answer else logits.softmax(-1)
        values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        return [
            [(self.answers[i], float(p)) for p, i in zip(v, ix)]
            for v, ix in zip(values.tolist(), indices.tolist())
        ]
