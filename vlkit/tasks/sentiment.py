"""The multimodal sentiment LightningModule: weighted cross-entropy, accuracy, macro-F1, AUROC, confusion matrix."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vlkit.data.sentiment import SentimentBatch
from vlkit.metrics import classification_metrics, confusion_matrix_metric
from vlkit.models import SentimentOutput, create_model, list_models
from vlkit.tasks.common import TrainingTask

__all__ = ["SentimentTask"]

log = logging.getLogger(__name__)
_SPLITS = ("train", "val", "test")


class SentimentTask(TrainingTask):
    """Trains a registered sentiment model: image + text → one of ``K`` classes (SPEC.md section 5).

    Loss: cross-entropy, weighted per class when ``class_weights`` is set (for imbalanced
    labels: ``Σ_i w_{y_i} CE_i / Σ_i w_{y_i}``, PyTorch's weighted mean) and optionally
    label-smoothed. Logged per split (``train``/``val``/``test``): ``loss``, ``acc``,
    ``macro_f1``, ``auroc`` (macro one-vs-rest) and ``skipped``. After testing, the confusion matrix (rows = true class,
    columns = predicted) is logged as text and written with the scores to
    ``<log_dir>/test_confusion_matrix.json``; :attr:`confusion_matrix` keeps it. Optimiser
    and schedule: see :class:`vlkit.tasks.common.TrainingTask`; a pretrained text encoder can
    train at a fraction of the learning rate (``text_lr_ratio``) and with layer-wise decay
    (``model_args.text_layer_lr_decay``).

    The classes and the tokenizer (word vocabulary or Hugging Face tokenizer name) are
    hyper-parameters, so a checkpoint alone rebuilds the model and classifies (``vlkit predict``).

    Args:
        model: name of a registered sentiment model (``vlkit.models.list_models("sentiment_*")``).
        model_args: keyword overrides for the model builder (e.g. ``{modality: image}``,
            ``{text_encoder: hf, text_layer_lr_decay: 0.9}``). With ``text_encoder: hf`` the
            encoder is the DataModule's tokenizer model unless ``text_model`` is set.
        classes: the class names (set from the DataModule by the CLI).
        vocabulary: word vocabulary (set from the DataModule), or None with ``tokenizer_name``.
        tokenizer_name: Hugging Face tokenizer id / path (set from the DataModule), or None.
        class_weights: ``K`` positive loss weights (set from the DataModule), or None.
        label_smoothing: in ``[0, 1)``; 0 = plain cross-entropy.
        lr, weight_decay, warmup_fraction, min_lr_ratio, backbone_lr_ratio: optimiser and
            schedule (see :class:`vlkit.tasks.VQATask`).
        on_nonfinite_loss: ``"error"`` or ``"skip"`` (see :class:`vlkit.tasks.VQATask`).
        text_lr_ratio: learning rate of the text encoder as a fraction of ``lr``, in ``[0, 1]``
            (e.g. 0.05 to fine-tune a pretrained encoder at ``lr/20`` while the fusion and head
            train at ``lr``).

    Raises:
        ValueError: unknown model name, missing classes or tokenizer, a tokenizer that does
            not fit the text encoder, class weights that do not match the classes, or
            out-of-range settings.
    """

    task_name = "sentiment"

    def __init__(
        self,
        model: str = "sentiment_small",
        model_args: dict[str, Any] | None = None,
        classes: list[str] | None = None,
        vocabulary: list[str] | None = None,
        tokenizer_name: str | None = None,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        backbone_lr_ratio: float = 1.0,
        text_lr_ratio: float = 1.0,
        on_nonfinite_loss: str = "error",
    ) -> None:
        super().__init__()
        if model not in list_models("sentiment_*"):
            raise ValueError(f"unknown sentiment model {model!r}; registered: {list_models('sentiment_*')}")
        if not classes or len(classes) < 2:
            raise ValueError(
                "SentimentTask needs the class names (at least two); `vlkit fit` links them from the "
                "DataModule, in Python pass classes=dm.classes"
            )
        if class_weights is not None and (
            len(class_weights) != len(classes) or not all(w > 0 for w in class_weights)
        ):
            raise ValueError(f"class_weights must be {len(classes)} positive numbers, got {class_weights}")
        if not 0.0 <= label_smoothing < 1.0 or not 0.0 <= text_lr_ratio <= 1.0:
            raise ValueError("need 0 <= label_smoothing < 1 and 0 <= text_lr_ratio <= 1")
        self.check_optimizer_args(lr, warmup_fraction, min_lr_ratio, backbone_lr_ratio)
        self.check_nonfinite_policy(on_nonfinite_loss)
        self.save_hyperparameters()
        self.model = create_model(model, num_classes=len(classes), **self._model_args(model_args or {}))
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)
        # one metric object per split; keys get a suffix because "train" is an nn.Module method name
        self.metrics = torch.nn.ModuleDict({f"{s}_": classification_metrics(len(classes)) for s in _SPLITS})
        self.test_confusion = confusion_matrix_metric(len(classes))
        self.confusion_matrix: Tensor | None = None

    def _model_args(self, model_args: dict) -> dict:
        """The builder arguments: ``model_args`` plus the text side the tokenizer implies."""
        vocabulary, tokenizer_name = self.hparams.vocabulary, self.hparams.tokenizer_name
        args = dict(model_args)
        text_encoder = args.get("text_encoder", "lstm")
        if args.get("modality", "both") == "image":
            return args
        if text_encoder == "hf":
            if tokenizer_name is None:
                raise ValueError(
                    "text_encoder 'hf' reads Hugging Face token ids: set the DataModule's tokenizer to "
                    "the same model (data.tokenizer), e.g. sentence-transformers/all-MiniLM-L6-v2"
                )
            if args.setdefault("text_model", tokenizer_name) != tokenizer_name:
                raise ValueError(
                    f"the text encoder {args['text_model']!r} and the tokenizer {tokenizer_name!r} differ; "
                    "token ids only fit the model they were made for"
                )
            return args
        if vocabulary is None:
            raise ValueError(
                f"text_encoder {text_encoder!r} needs the word vocabulary (data.tokenizer: null); with a "
                f"Hugging Face tokenizer ({tokenizer_name!r}) use model_args.text_encoder: hf"
            )
        args["vocab_size"] = len(vocabulary)
        return args

    @property
    def classes(self) -> list[str]:
        return list(self.hparams.classes)

    def forward(self, image: Tensor, text_ids: Tensor, text_mask: Tensor | None = None) -> SentimentOutput:
        return self.model(image, text_ids, text_mask)

    def loss(self, logits: Tensor, label: Tensor) -> Tensor:
        """(Weighted, label-smoothed) cross-entropy of ``(b, K)`` logits against ``(b,)`` labels."""
        return F.cross_entropy(
            logits, label, weight=self.class_weights, label_smoothing=self.hparams.label_smoothing
        )

    def _step(self, batch: SentimentBatch, split: str) -> Tensor:
        logits = self(batch.image, batch.text_ids, batch.text_mask).logits  # (b, K)
        loss = self.loss(logits, batch.label)
        preds = logits.argmax(-1)
        metrics = self.metrics[f"{split}_"]
        metrics(logits.detach().float(), batch.label)  # arg-max for acc / F1, softmax for AUROC
        if split == "test":
            self.test_confusion(preds, batch.label)
        size = logits.shape[0]
        self.log_loss(split, loss, size)
        for name, metric in metrics.items():
            self.log(
                f"{split}/{name}",
                metric,
                batch_size=size,
                on_step=False,
                on_epoch=True,
                prog_bar=name == "acc",
            )
        self.log_skipped(split, batch.num_skipped)
        return loss

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        matrix = self.test_confusion.compute().cpu()  # (K, K), synchronised across processes
        self.confusion_matrix = matrix
        width = max(len(c) for c in self.classes)
        lines = [" " * width + " | " + " ".join(f"{c[:width]:>{width}}" for c in self.classes)]
        lines += [
            f"{c:>{width}} | " + " ".join(f"{int(v):>{width}}" for v in row)
            for c, row in zip(self.classes, matrix)
        ]
        log.info("test confusion matrix (rows: true class, columns: predicted):\n%s", "\n".join(lines))
        log_dir = self.trainer.log_dir if self.trainer is not None else None
        if log_dir is not None and self.trainer.is_global_zero:
            path = Path(log_dir) / "test_confusion_matrix.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            scores = {k: float(v) for k, v in self.metrics["test_"].compute().items()}
            path.write_text(
                json.dumps({"classes": self.classes, "confusion_matrix": matrix.tolist(), "scores": scores})
            )
            log.info("test confusion matrix written to %s", path)

    @torch.no_grad()
    def classify(self, image: Tensor, text_ids: Tensor, text_mask: Tensor | None = None) -> Tensor:
        """Class probabilities ``(b, K)`` (softmax) for ``image (b, 3, H, W)`` and ``text_ids (b, l)``;
        column ``k`` is :attr:`classes` ``[k]``."""
        return self(image, text_ids, text_mask).logits.softmax(-1)
