"""The image-captioning LightningModule: teacher forcing, decoding, caption metrics, and batch
captioning of raw images."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vlkit.data.batching import SkippedBatch
from vlkit.data.captioning import CaptionBatch
from vlkit.data.preprocessing import Preprocessing
from vlkit.metrics import CaptionMetrics
from vlkit.models import CaptioningModel, DecoderConfig, GenerationOutput, doubly_stochastic_penalty
from vlkit.tasks.base import TrainingTask
from vlkit.tasks.inference import ImageInput, image_batch, in_eval_mode
from vlkit.tasks.optimization import Optimization
from vlkit.text.caption import CaptionTokenizer, create_caption_tokenizer
from vlkit.vision import ImageEncoderConfig

__all__ = ["CaptionPrediction", "CaptioningTask"]

log = logging.getLogger(__name__)
_EVAL_SPLITS = ("val", "test")


class CaptionPrediction(NamedTuple):
    """The caption of :meth:`CaptioningTask.predict` for one image.

    Attributes:
        caption: the generated caption, detokenised.
        score: the search's score of the caption (its log-probability, length-penalised when
            ``length_penalty > 0``).
        log_prob: its log-probability (natural log, ``<= 0``).
        tokens: the generated tokens, ``<eos>`` included when the caption ended with it.
        attention: ``(len(tokens), n)`` the attention over the image regions when each token
            was generated, with ``return_attention``, else None.
        grid_size: ``(h, w)`` of the region grid (``h · w = n``).
    """

    caption: str
    score: float
    log_prob: float
    tokens: list[str]
    attention: Tensor | None = None
    grid_size: tuple[int, int] | None = None


class CaptioningTask(TrainingTask):
    """Trains a captioning model configured as its parts (Xu et al., ICML 2015, arXiv:1502.03044;
    Vinyals et al., CVPR 2015, arXiv:1411.4555).

    Loss: token cross-entropy with teacher forcing (optionally label-smoothed, Szegedy et al.,
    CVPR 2016), averaged over the caption tokens of the batch, plus ``λ`` times the doubly
    stochastic attention penalty :func:`vlkit.models.doubly_stochastic_penalty` when the
    decoder returns attention weights in training (Show, Attend and Tell), plus the REINFORCE
    loss of hard attention (reward = the caption's log-likelihood). The penalty and the
    REINFORCE log-probabilities count the steps that predict a caption token (``<eos>``
    included), the target mask: a caption's terms are the same whatever else is in its batch. Validation decodes with
    ``val_beam_size`` (greedy by default), test with ``beam_size``; both log ``bleu1`` …
    ``bleu4``, ``rouge_l`` and ``cider_d`` (coco-caption definitions, :mod:`vlkit.metrics`)
    beside ``loss``. After testing, the generated captions and their references are written
    to ``<log_dir>/test_captions.json``.

    Args:
        image_encoder: the image encoder (:class:`vlkit.vision.ImageEncoderConfig`).
        decoder: the caption decoder (:class:`vlkit.models.DecoderConfig`: ``show_attend_tell``
            or ``transformer``), given the image encoder's width and the tokenizer's size.
        vocabulary: word vocabulary (set from the DataModule by the CLI), or None with
            ``tokenizer_name``.
        tokenizer_name: Hugging Face tokenizer id / path (set from the DataModule), or None.
        label_smoothing: in ``[0, 1)``; 0 = plain cross-entropy.
        attention_regularization: ``λ >= 0`` of the doubly stochastic penalty (the paper's 1).
        max_length: most tokens generated when decoding (``<eos>`` included; >= 1).
        beam_size: beam size for test and :meth:`predict` (1 = greedy).
        val_beam_size: beam size for validation (1 = greedy, the cheapest).
        length_penalty: GNMT length-penalty exponent ``α >= 0`` used by beam search.
        preprocessing, optimization, on_nonfinite_loss, pretrained, local_files: see
            :class:`vlkit.tasks.TrainingTask`.

    Raises:
        ValueError: missing or both tokenizer settings, or an invalid part configuration or setting.
    """

    task_name = "captioning"
    monitor = ("val/cider_d", "max")

    def __init__(
        self,
        image_encoder: ImageEncoderConfig = ImageEncoderConfig(),
        decoder: DecoderConfig = DecoderConfig("show_attend_tell"),
        vocabulary: list[str] | None = None,
        tokenizer_name: str | None = None,
        label_smoothing: float = 0.0,
        attention_regularization: float = 1.0,
        max_length: int = 20,
        beam_size: int = 3,
        val_beam_size: int = 1,
        length_penalty: float = 0.0,
        preprocessing: Preprocessing | None = None,
        optimization: Optimization = Optimization(),
        on_nonfinite_loss: str = "error",
        pretrained: bool = True,
        local_files: dict[str, str] | None = None,
    ) -> None:
        super().__init__(preprocessing, optimization, on_nonfinite_loss, pretrained, local_files)
        if not 0 <= label_smoothing < 1 or attention_regularization < 0 or length_penalty < 0:
            raise ValueError(
                "need 0 <= label_smoothing < 1, attention_regularization >= 0 and length_penalty >= 0"
            )
        if min(max_length, beam_size, val_beam_size) < 1:
            raise ValueError("max_length, beam_size and val_beam_size must be >= 1")
        image_encoder, decoder = ImageEncoderConfig.parse(image_encoder), DecoderConfig.parse(decoder)
        self.save_configuration()
        self.tokenizer: CaptionTokenizer = create_caption_tokenizer(
            vocabulary, tokenizer_name, self.local_files.get(tokenizer_name) if tokenizer_name else None
        )
        tok = self.tokenizer
        self.model = CaptioningModel.from_config(
            len(tok), tok.bos_id, tok.eos_id, tok.pad_id, image_encoder, decoder, pretrained=pretrained
        )
        self.caption_metrics = torch.nn.ModuleDict({s: CaptionMetrics() for s in _EVAL_SPLITS})
        self._test_examples: list[dict] = []
        self._caption_counts: dict[str, list[int]] = {}  # split -> [empty captions, captions]

    def forward(self, image: Tensor, caption_ids: Tensor, caption_mask: Tensor | None = None):
        return self.model(image, caption_ids, caption_mask)

    def _step(self, batch: CaptionBatch, split: str, encoded: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """The loss of ``batch``; ``encoded``: its ``(features, mask)`` if already computed."""
        inputs, targets = batch.caption_ids[:, :-1], batch.caption_ids[:, 1:]  # (b, T)
        # the steps that count are those that predict a real token: the step whose input is <eos>
        # (its target is padding) is not one, so the penalty and the REINFORCE log-probabilities of a
        # caption do not depend on the length of the others in its batch
        target_mask = batch.caption_mask[:, 1:]  # (b, T)
        if encoded is None:
            out = self(batch.image, inputs, target_mask)
        else:
            out = self.model.decoder(*encoded, inputs, target_mask)
        token_loss = F.cross_entropy(
            out.logits.transpose(1, 2),  # (b, V, T)
            targets,
            reduction="none",
            label_smoothing=self.hparams.label_smoothing,
        ) * target_mask.to(out.logits.dtype)  # (b, T)
        loss = token_loss.sum() / target_mask.sum().clamp_min(1)
        size = targets.shape[0]
        total = loss
        if split == "train":
            if out.weights is not None and self.hparams.attention_regularization > 0:
                penalty = doubly_stochastic_penalty(out.weights, target_mask).mean()
                total = total + self.hparams.attention_regularization * penalty
                self.log("train/attention_penalty", penalty, batch_size=size, on_step=True, on_epoch=True)
            total = self.add_hard_attention_loss(total, -token_loss.sum(-1))
        self.log_loss(split, loss, size)
        self.log_skipped(split, batch.num_skipped)
        return total

    def _evaluate(self, batch: CaptionBatch | SkippedBatch, split: str) -> Tensor | None:
        if isinstance(batch, SkippedBatch):
            return self.skip_batch(batch, split)
        encoded = self.model.image_encoder(batch.image)[:2]  # once for the loss and the captions
        loss = self._step(batch, split, encoded)
        beam = self.hparams.val_beam_size if split == "val" else self.hparams.beam_size
        captions = self.decode(self.search(*encoded, beam_size=beam).tokens)
        counts = self._caption_counts.setdefault(split, [0, 0])  # [empty, all]
        counts[0] += sum(not caption.strip() for caption in captions)
        counts[1] += len(captions)
        self.caption_metrics[split].update(captions, batch.references)
        if split == "test":
            self._test_examples += [
                {"caption": c, "references": r} for c, r in zip(captions, batch.references)
            ]
        return loss

    def _log_metrics(self, split: str) -> dict[str, float]:
        empty, total = self._caption_counts.pop(split, [0, 0])
        if empty and (self._trainer is None or self.trainer.is_global_zero):
            log.warning(
                "%d of %d %s captions are empty (the decoder gave <eos> first): they score 0 on every "
                "metric%s",
                empty,
                total,
                {"val": "validation"}.get(split, split),
                "; the model has not learned to caption yet, or max_length is too small" if empty == total else "",
            )
        scores = self.caption_metrics[split].compute()  # over every process's captions (state gathered)
        for name, value in scores.items():
            # equal on every process already: syncing averages equal values (and keeps Lightning quiet)
            self.log(f"{split}/{name}", value, prog_bar=name in ("bleu4", "cider_d"), sync_dist=True)
        self.caption_metrics[split].reset()
        return {k: float(v) for k, v in scores.items()}

    def validation_step(self, batch: CaptionBatch, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch: CaptionBatch, batch_idx: int) -> Tensor:
        return self._evaluate(batch, "test")

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._test_examples = []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        scores = self._log_metrics("test")
        log_dir = self.trainer.log_dir if self.trainer is not None else None
        if log_dir is not None and self.trainer.is_global_zero:
            path = Path(log_dir) / "test_captions.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"scores": scores, "captions": self._test_examples}, indent=1))
            log.info("test captions written to %s", path)

    @torch.no_grad()
    def generate(
        self, image: Tensor, beam_size: int | None = None, max_length: int | None = None
    ) -> GenerationOutput:
        """Decode captions for ``image (b, 3, H, W)`` (token ids, scores, per-token attention)."""
        return self.search(*self.model.image_encoder(image)[:2], beam_size=beam_size, max_length=max_length)

    @torch.no_grad()
    def search(
        self,
        features: Tensor,
        feature_mask: Tensor | None,
        beam_size: int | None = None,
        max_length: int | None = None,
    ) -> GenerationOutput:
        """:meth:`generate` from encoded regions ``(b, n, d_v)``, with the task's decoding settings
        (``beam_size``, ``max_length``, ``length_penalty``) unless given."""
        return self.model.search(
            features,
            feature_mask,
            max_length=max_length or self.hparams.max_length,
            beam_size=beam_size or self.hparams.beam_size,
            alpha=self.hparams.length_penalty,
        )

    def decode(self, tokens: Tensor) -> list[str]:
        """Caption strings of generated ``tokens (b, L)``."""
        return [self.tokenizer.decode(row) for row in tokens.tolist()]

    @functools.cached_property
    def _token_names(self) -> dict[int, str]:
        tok = self.tokenizer
        return {tok.eos_id: "<eos>", tok.bos_id: "<bos>", tok.pad_id: "<pad>"}

    @torch.no_grad()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        beam_size: int | None = None,
        max_length: int | None = None,
        return_attention: bool = False,
    ) -> list[CaptionPrediction]:
        """Caption a batch of images, prepared as the training data was.

        Args:
            images: one image or a list: paths, PIL images or ``(3, H, W)`` tensors (uint8, or
                float in ``[0, 1]``), or a ``(b, 3, H, W)`` tensor.
            beam_size: beam size (default: the task's ``beam_size``; 1 = greedy).
            max_length: most tokens to generate (default: the task's ``max_length``).
            return_attention: also return each token's attention over the image regions.

        Returns:
            One :class:`CaptionPrediction` per image, in order.

        Raises:
            ValueError: no preprocessing, or ``beam_size`` / ``max_length`` below 1.
            FileNotFoundError: an image path that does not exist.
        """
        if (beam_size is not None and beam_size < 1) or (max_length is not None and max_length < 1):
            raise ValueError(f"beam_size and max_length must be >= 1, got {beam_size} and {max_length}")
        pixels = image_batch(images, self.preprocessing).to(self.device)

        def run() -> tuple:
            encoded = self.model.image_encoder(pixels)
            return encoded, self.search(encoded[0], encoded[1], beam_size=beam_size, max_length=max_length)

        encoded, out = in_eval_mode(self, run)
        captions = self.decode(out.tokens)
        grid = getattr(encoded, "grid_size", None)
        predictions = []
        for row, caption in enumerate(captions):
            length = int(out.lengths[row])
            ids = out.tokens[row, :length].tolist()
            tokens = [self._token_names.get(i) or self.tokenizer.decode([i]) for i in ids]
            attention = out.weights[row, :length].float().cpu() if return_attention else None
            predictions.append(
                CaptionPrediction(
                    caption, float(out.scores[row]), float(out.log_probs[row]), tokens, attention, grid
                )
            )
        return predictions
