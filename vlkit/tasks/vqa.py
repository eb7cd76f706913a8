"""The VQA LightningModule: loss, metrics, and batch prediction from raw images and questions."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from vlkit.data.batching import pad_with_mask
from vlkit.data.preprocessing import Preprocessing
from vlkit.data.vqa import VQABatch
from vlkit.fusion import FusionConfig
from vlkit.metrics import ExactMatchAccuracy, VQAAccuracy
from vlkit.models import HeadConfig, VQAModel, VQAOutput
from vlkit.tasks.base import TrainingTask
from vlkit.tasks.inference import ImageInput, as_list, image_batch, in_eval_mode, row_attention
from vlkit.tasks.optimization import Optimization
from vlkit.text import TextEncoderConfig, WordTokenizer
from vlkit.vision import ImageEncoderConfig

__all__ = ["VQAPrediction", "VQATask"]

log = logging.getLogger(__name__)
_SPLITS = ("train", "val", "test")


class VQAPrediction(NamedTuple):
    """The answer of :meth:`VQATask.predict` to one question.

    Attributes:
        answer: the most likely answer.
        score: its probability in ``[0, 1]`` (softmax over the answers with one answer per
            training question, a per-answer sigmoid with several).
        answers: the ``top_k`` most likely ``(answer, probability)`` pairs, most likely first.
        tokens: the question's words as the model read them (``<unk>`` for words not in its
            vocabulary, cut to the saved ``max_text_length``).
        unknown_words: the question's words that are not in the vocabulary (read as ``<unk>``).
        image_weights: ``(n,)`` attention over the image regions, with ``return_attention``
            and a fusion that has it, else None.
        text_weights: ``(l,)`` attention over ``tokens``, likewise.
        grid_size: ``(h, w)`` of the region grid (``h · w = n``).
    """

    answer: str
    score: float
    answers: list[tuple[str, float]]
    tokens: list[str]
    unknown_words: list[str]
    image_weights: Tensor | None = None
    text_weights: Tensor | None = None
    grid_size: tuple[int, int] | None = None


class VQATask(TrainingTask):
    """Trains a VQA model configured as its parts (Antol et al., ICCV 2015, arXiv:1505.00468).

    Loss: cross-entropy on the answer index when each question has one answer; binary
    cross-entropy on the soft scores ``min(#annotators / 3, 1)`` when it has several
    (Teney et al., CVPR 2018, arXiv:1708.02711), summed over answers and averaged over the
    batch. A model with hard attention trained by REINFORCE (fusion ``image_context:
    reinforce``) adds the score-function loss of :func:`vlkit.attention.hard_attention_loss` with
    reward ``−loss`` per sample, logged as ``train/policy_loss``. Logged per split
    (``train``/``val``/``test``): ``loss``, ``vqa_acc``, ``exact_match`` and ``skipped``
    (unreadable samples). ``vqa_acc`` is the official VQA accuracy (:class:`vlkit.metrics.VQAAccuracy`:
    normalised answers, mean over the leave-one-out subsets of the human answers), not the soft
    training target. The optimiser and schedule are :class:`vlkit.tasks.Optimization`'s.

    The part configurations, the vocabularies and the preprocessing are hyper-parameters, so a
    checkpoint alone rebuilds the model and answers questions (:meth:`predict`).

    Args:
        image_encoder: the image encoder (:class:`vlkit.vision.ImageEncoderConfig`).
        text_encoder: the question encoder (:class:`vlkit.text.TextEncoderConfig`; a word-level
            one: ``lstm``, ``transformer`` or ``embedding``).
        fusion: the fusion layer (:class:`vlkit.fusion.FusionConfig`), given the encoders' widths.
        head: the answer head (:class:`vlkit.models.HeadConfig`), given the fusion's width.
        vocabulary: question vocabulary (set from the DataModule by the CLI).
        answers: answer vocabulary (set from the DataModule by the CLI).
        multi_answer: whether training rows have several answers (set from the DataModule);
            only changes how logits become probabilities (sigmoid vs softmax).
        preprocessing, optimization, on_nonfinite_loss, pretrained, local_files: see
            :class:`vlkit.tasks.TrainingTask`.

    Each part is a config, its mapping (``{name: mcan, depth: 2}``) or a name.

    Raises:
        ValueError: missing vocabularies, a Hugging Face text encoder (VQA questions are read
            with a word vocabulary), or an invalid part configuration or setting.
    """

    task_name = "vqa"
    monitor = ("val/vqa_acc", "max")

    def __init__(
        self,
        image_encoder: ImageEncoderConfig = ImageEncoderConfig(),
        text_encoder: TextEncoderConfig = TextEncoderConfig("lstm"),
        fusion: FusionConfig = FusionConfig("parallel_coattention"),
        head: HeadConfig = HeadConfig(),
        vocabulary: list[str] | None = None,
        answers: list[str] | None = None,
        multi_answer: bool = False,
        preprocessing: Preprocessing | None = None,
        optimization: Optimization = Optimization(),
        on_nonfinite_loss: str = "error",
        pretrained: bool = True,
        local_files: dict[str, str] | None = None,
    ) -> None:
        super().__init__(preprocessing, optimization, on_nonfinite_loss, pretrained, local_files)
        if not vocabulary or not answers:
            raise ValueError(
                "VQATask needs the question vocabulary and the answer list; `vlkit fit` links them from "
                "the DataModule, in Python pass vocabulary=dm.vocabulary, answers=dm.answers"
            )
        image_encoder, text_encoder = (
            ImageEncoderConfig.parse(image_encoder),
            TextEncoderConfig.parse(text_encoder),
        )
        fusion, head = FusionConfig.parse(fusion), HeadConfig.parse(head)
        if text_encoder.name == "hf":
            raise ValueError(
                "VQADataModule reads questions with a word vocabulary: use a word-level text encoder "
                "(lstm, transformer or embedding), not 'hf'"
            )
        self.save_configuration()
        self.model = VQAModel.from_config(
            len(answers),
            len(vocabulary),
            image_encoder,
            text_encoder,
            fusion,
            head,
            pretrained=pretrained,
            local_files=self.local_files,
        )
        # one metric object per split; keys get a suffix because "train" is an nn.Module method name
        self.vqa_acc = torch.nn.ModuleDict({f"{s}_": VQAAccuracy() for s in _SPLITS})
        self.exact_match = torch.nn.ModuleDict({f"{s}_": ExactMatchAccuracy() for s in _SPLITS})

    @property
    def answers(self) -> list[str]:
        """The answer vocabulary, in logit order."""
        return list(self.hparams.answers)

    @functools.cached_property
    def tokenizer(self) -> WordTokenizer:
        """The question tokenizer (the saved word vocabulary)."""
        return WordTokenizer(list(self.hparams.vocabulary))

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

    def encode_questions(self, questions: Sequence[str]) -> tuple[Tensor, Tensor]:
        """``(b, l)`` int64 token ids and ``(b, l)`` bool mask of ``questions``, cut to the saved
        ``max_text_length``.

        Raises:
            ValueError: an empty question, or one that is not a string.
        """
        limit = self.preprocessing.max_text_length if self.preprocessing is not None else None
        encoded = []
        for question in questions:
            if not isinstance(question, str) or not WordTokenizer.split(question):
                raise ValueError(f"a question must be a non-empty string, got {question!r}")
            encoded.append(self.tokenizer.encode(question, limit))
        return pad_with_mask(encoded)

    @torch.no_grad()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        questions: str | Sequence[str],
        top_k: int = 5,
        return_attention: bool = False,
    ) -> list[VQAPrediction]:
        """Answer a batch of questions about images, prepared as the training data was.

        Args:
            images: one image or a list: paths, PIL images or ``(3, H, W)`` tensors (uint8, or
                float in ``[0, 1]``), or a ``(b, 3, H, W)`` tensor.
            questions: one question per image (a string for a single image).
            top_k: how many answers each prediction lists (>= 1).
            return_attention: also return the region and word attention of fusions that have it.

        Returns:
            One :class:`VQAPrediction` per image, in order. The model runs in eval mode on its
            device; the task's training mode is restored afterwards.

        Raises:
            ValueError: no preprocessing, image and question counts that differ, an empty
                question, or ``top_k < 1``.
            FileNotFoundError: an image path that does not exist.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        pixels = image_batch(images, self.preprocessing)
        questions = as_list(questions, "question")
        if len(questions) != pixels.shape[0]:
            raise ValueError(
                f"got {pixels.shape[0]} image(s) and {len(questions)} question(s); give one per image"
            )
        ids, mask = self.encode_questions(questions)
        out = in_eval_mode(
            self, lambda: self(pixels.to(self.device), ids.to(self.device), mask.to(self.device))
        )
        probs = (out.logits.sigmoid() if self.hparams.multi_answer else out.logits.softmax(-1)).float().cpu()
        values, indices = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
        vocabulary = self.tokenizer.vocabulary
        predictions = []
        for row, (question, row_ids) in enumerate(zip(questions, ids.tolist())):
            length = int(mask[row].sum())
            ranked = [
                (self.answers[i], float(p)) for p, i in zip(values[row].tolist(), indices[row].tolist())
            ]
            words = WordTokenizer.split(question, self.tokenizer.lowercase)
            predictions.append(
                VQAPrediction(
                    ranked[0][0],
                    ranked[0][1],
                    ranked,
                    [vocabulary[i] for i in row_ids[:length]],
                    [w for w in words if w not in self.tokenizer.index],
                    grid_size=out.grid_size,
                    **row_attention(out, row, length, return_attention),
                )
            )
        return predictions
