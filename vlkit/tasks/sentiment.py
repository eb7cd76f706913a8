"""The multimodal sentiment LightningModule: weighted cross-entropy, accuracy, macro-F1, AUROC,
confusion matrix, and batch prediction from raw images and texts."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vlkit.data.batching import pad_with_mask
from vlkit.data.preprocessing import Preprocessing
from vlkit.data.sentiment import SentimentBatch
from vlkit.fusion import FusionConfig
from vlkit.metrics import classification_metrics, confusion_matrix_metric
from vlkit.models import MODALITIES, HeadConfig, SentimentModel, SentimentOutput
from vlkit.tasks.base import TrainingTask
from vlkit.tasks.inference import ImageInput, as_list, image_batch, in_eval_mode, row_attention
from vlkit.tasks.optimization import Optimization
from vlkit.text import HFTokenizer, TextEncoderConfig, WordTokenizer
from vlkit.vision import ImageEncoderConfig

__all__ = ["SentimentPrediction", "SentimentTask"]

log = logging.getLogger(__name__)
_SPLITS = ("train", "val", "test")


class SentimentPrediction(NamedTuple):
    """The class of :meth:`SentimentTask.predict` for one image (and text).

    Attributes:
        label: the most likely class.
        score: its probability in ``[0, 1]`` (softmax).
        probabilities: ``(class, probability)`` for every class, most likely first.
        tokens: the text's tokens as the model read them (``<unk>`` for unknown words; ``[]``
            for an image-only model).
        image_weights: ``(n,)`` attention over the image regions, with ``return_attention`` and
            a fusion that has it, else None.
        text_weights: ``(l,)`` attention over ``tokens``, likewise.
        grid_size: ``(h, w)`` of the region grid, or None without an image encoder.
    """

    label: str
    score: float
    probabilities: list[tuple[str, float]]
    tokens: list[str]
    image_weights: Tensor | None = None
    text_weights: Tensor | None = None
    grid_size: tuple[int, int] | None = None


class SentimentTask(TrainingTask):
    """Trains a sentiment model configured as its parts: image + text → one of ``K`` classes
    (multimodal sentiment, e.g. Tsai et al., MulT, ACL 2019, arXiv:1906.00295).

    Loss: cross-entropy, weighted per class when ``class_weights`` is set (for imbalanced
    labels: ``Σ_i w_{y_i} CE_i / Σ_i w_{y_i}``, PyTorch's weighted mean) and optionally
    label-smoothed. Logged per split (``train``/``val``/``test``): ``loss``, ``acc``,
    ``macro_f1``, ``auroc`` (macro one-vs-rest) and ``skipped``. After testing, the confusion
    matrix (rows = true class, columns = predicted) is logged as text and written with the scores
    to ``<log_dir>/test_confusion_matrix.json``; :attr:`confusion_matrix` keeps it. A pretrained
    text encoder can train at a fraction of the learning rate (``optimization.text_lr_ratio``)
    and with layer-wise decay (the ``hf`` text encoder's ``layer_lr_decay``).

    Args:
        image_encoder: the image encoder (:class:`vlkit.vision.ImageEncoderConfig`).
        text_encoder: the text encoder (:class:`vlkit.text.TextEncoderConfig`). With ``hf`` its
            ``model_name_or_path`` must be the DataModule's tokenizer (left unset, it is).
        fusion: the fusion layer (:class:`vlkit.fusion.FusionConfig`; cross-modal attention,
            each region over the words, is the usual choice).
        head: the class head (:class:`vlkit.models.HeadConfig`).
        modality: ``"both"``, or a unimodal baseline from the same parts: ``"image"`` (image
            encoder, average pooling, head) or ``"text"``; the unused parts are not built.
        classes: the class names (set from the DataModule by the CLI).
        vocabulary: word vocabulary (set from the DataModule), or None with ``tokenizer_name``.
        tokenizer_name: Hugging Face tokenizer id / path (set from the DataModule), or None.
        class_weights: ``K`` positive loss weights (set from the DataModule), or None.
        label_smoothing: in ``[0, 1)``; 0 = plain cross-entropy.
        preprocessing, optimization, on_nonfinite_loss, pretrained, local_files: see
            :class:`vlkit.tasks.TrainingTask`.

    Raises:
        ValueError: missing classes or tokenizer, a tokenizer that does not fit the text encoder,
            class weights that do not match the classes, or an invalid part configuration or setting.
    """

    task_name = "sentiment"
    monitor = ("val/macro_f1", "max")

    def __init__(
        self,
        image_encoder: ImageEncoderConfig = ImageEncoderConfig(),
        text_encoder: TextEncoderConfig = TextEncoderConfig("lstm"),
        fusion: FusionConfig = FusionConfig("cross_modal_attention"),
        head: HeadConfig = HeadConfig(),
        modality: str = "both",
        classes: list[str] | None = None,
        vocabulary: list[str] | None = None,
        tokenizer_name: str | None = None,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        preprocessing: Preprocessing | None = None,
        optimization: Optimization = Optimization(),
        on_nonfinite_loss: str = "error",
        pretrained: bool = True,
        local_files: dict[str, str] | None = None,
    ) -> None:
        super().__init__(preprocessing, optimization, on_nonfinite_loss, pretrained, local_files)
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {list(MODALITIES)}, got {modality!r}")
        if not classes or len(classes) < 2:
            raise ValueError(
                "SentimentTask needs the class names (at least two); `vlkit fit` links them from the "
                "DataModule, in Python pass classes=dm.classes"
            )
        if class_weights is not None and (
            len(class_weights) != len(classes) or not all(w > 0 for w in class_weights)
        ):
            raise ValueError(f"class_weights must be {len(classes)} positive numbers, got {class_weights}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        image_encoder, fusion, head = (
            ImageEncoderConfig.parse(image_encoder),
            FusionConfig.parse(fusion),
            HeadConfig.parse(head),
        )
        text_encoder = _fitted_text_encoder(
            TextEncoderConfig.parse(text_encoder), modality, vocabulary, tokenizer_name
        )
        self.save_configuration()
        self.model = SentimentModel.from_config(
            len(classes),
            len(vocabulary) if vocabulary is not None else None,
            image_encoder,
            text_encoder,
            fusion,
            head,
            modality=modality,
            pretrained=pretrained,
            local_files=self.local_files,
        )
        #: The text tokenizer (the saved vocabulary or Hugging Face tokenizer), None for an image-only model.
        self.tokenizer: WordTokenizer | HFTokenizer | None = None
        if modality != "image":
            self.tokenizer = (
                HFTokenizer(tokenizer_name, local_files=self.local_files.get(tokenizer_name))
                if tokenizer_name
                else WordTokenizer(list(vocabulary))
            )
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weights", weights, persistent=False)
        # one metric object per split; keys get a suffix because "train" is an nn.Module method name
        self.metrics = torch.nn.ModuleDict({f"{s}_": classification_metrics(len(classes)) for s in _SPLITS})
        self.test_confusion = confusion_matrix_metric(len(classes))
        self.confusion_matrix: Tensor | None = None

    @property
    def classes(self) -> list[str]:
        """The class names, in logit order."""
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
        scores = {k: float(v) for k, v in self.metrics["test_"].compute().items()}  # synced: every process
        log_dir = self.trainer.log_dir if self.trainer is not None else None
        if log_dir is not None and self.trainer.is_global_zero:
            path = Path(log_dir) / "test_confusion_matrix.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                json.dumps({"classes": self.classes, "confusion_matrix": matrix.tolist(), "scores": scores})
            )
            log.info("test confusion matrix written to %s", path)

    def encode_texts(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(b, l)`` token ids and bool mask of ``texts`` (the saved tokenizer, cut to the saved
        ``max_text_length``).

        Raises:
            ValueError: an empty text, or one that is not a string.
        """
        limit = self.preprocessing.max_text_length if self.preprocessing is not None else None
        tokenizer = self.tokenizer
        encoded = []
        for text in texts:
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"a text must be a non-empty string, got {text!r}")
            encoded.append(tokenizer.encode(text, limit))
        return pad_with_mask(encoded, tokenizer.pad_id if isinstance(tokenizer, HFTokenizer) else 0)

    @torch.no_grad()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput] | None,
        texts: str | Sequence[str] | None = None,
        return_attention: bool = False,
    ) -> list[SentimentPrediction]:
        """Classify a batch of images and their texts, prepared as the training data was.

        Args:
            images: one image or a list: paths, PIL images or ``(3, H, W)`` tensors (uint8, or
                float in ``[0, 1]``), or a ``(b, 3, H, W)`` tensor; None for a text-only model.
            texts: one text per image (a string for a single image); None for an image-only model.
            return_attention: also return the region and word attention of fusions that have it.

        Returns:
            One :class:`SentimentPrediction` per image, in order.

        Raises:
            ValueError: no preprocessing, missing texts for a model that reads them, counts that
                differ, or an empty text.
            FileNotFoundError: an image path that does not exist.
        """
        tokenizer = self.tokenizer
        if images is None and self.model.image_encoder is None and texts is not None:  # text-only model
            size = len(as_list(texts, "text"))
            pixels = torch.zeros(size, 3, 1, 1)  # not read
        else:
            pixels = image_batch(images, self.preprocessing)
            size = pixels.shape[0]
        if tokenizer is None:  # an image-only baseline reads no text
            ids, mask, texts = (
                torch.zeros(size, 1, dtype=torch.long),
                torch.ones(size, 1, dtype=torch.bool),
                None,
            )
        else:
            if texts is None:
                raise ValueError("this sentiment model reads a text with each image: give texts")
            texts = as_list(texts, "text")
            if len(texts) != size:
                raise ValueError(f"got {size} image(s) and {len(texts)} text(s); give one per image")
            ids, mask = self.encode_texts(texts)
        out = in_eval_mode(
            self, lambda: self(pixels.to(self.device), ids.to(self.device), mask.to(self.device))
        )
        probs = out.logits.softmax(-1).float().cpu()
        predictions = []
        for row in range(size):
            ranked = sorted(zip(self.classes, probs[row].tolist()), key=lambda pair: -pair[1])
            length = int(mask[row].sum())
            tokens = [] if tokenizer is None else _token_strings(tokenizer, ids[row, :length].tolist())
            attention = row_attention(out, row, length, return_attention)
            predictions.append(
                SentimentPrediction(
                    ranked[0][0], ranked[0][1], ranked, tokens, grid_size=out.grid_size, **attention
                )
            )
        return predictions


def _fitted_text_encoder(
    config: TextEncoderConfig, modality: str, vocabulary: list[str] | None, tokenizer_name: str | None
) -> TextEncoderConfig:
    """The text encoder's configuration, checked against the tokenizer the data uses; a
    Hugging Face encoder without a model name gets the tokenizer's.

    Raises:
        ValueError: a tokenizer that does not fit the text encoder.
    """
    if modality == "image":
        return config
    if config.name == "hf":
        if tokenizer_name is None:
            raise ValueError(
                "the text encoder 'hf' reads Hugging Face token ids: set the DataModule's tokenizer_name "
                "to the same model, e.g. sentence-transformers/all-MiniLM-L6-v2"
            )
        if config.model_name_or_path is None:
            return config.replace(model_name_or_path=tokenizer_name)
        if config.model_name_or_path != tokenizer_name:
            raise ValueError(
                f"the text encoder {config.model_name_or_path!r} and the tokenizer {tokenizer_name!r} "
                "differ; token ids only fit the model they were made for"
            )
        return config
    if vocabulary is None:
        raise ValueError(
            f"the text encoder {config.name!r} needs the word vocabulary (data tokenizer_name: null); "
            f"with a Hugging Face tokenizer ({tokenizer_name!r}) use the text encoder 'hf'"
        )
    return config


def _token_strings(tokenizer: WordTokenizer | HFTokenizer, ids: list[int]) -> list[str]:
    """The token string of each id (``[CLS]``/``[SEP]`` included for a Hugging Face tokenizer)."""
    if isinstance(tokenizer, HFTokenizer):
        return tokenizer.tokenizer.convert_ids_to_tokens(ids)
    return [tokenizer.vocabulary[i] for i in ids]
