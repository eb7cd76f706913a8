"""VQA data: any Hugging Face ``DatasetDict`` with image / question / answer(s) columns.

Bad samples follow ``on_bad_sample`` (see :mod:`vlkit.data.bad_samples`): an empty or missing
question (None, ``""``, only spaces) and a missing answer (None, ``""``, an empty list) are
each an error naming the split, rows and column, or, with ``skip``, left out, listed in
``skipped_rows`` and reported. An unreadable image is found when its batch is built: an
error, or (``skip``) left out of the batch and counted in its ``num_skipped``. Questions are
cut to ``max_question_length`` tokens; words not in the vocabulary are ``<unk>``.

Answers outside the answer vocabulary are never an error: the vocabulary is the top-K
training answers by design. Training questions with no answer in the vocabulary are
left out (they give no training signal), and the count is logged; validation and test
questions are all kept, so such questions score 0 as in the official VQA metric.

Scoring follows the official VQA evaluation (Antol et al., "VQA: Visual Question Answering",
ICCV 2015, arXiv:1505.00468; ``vqaEval.py`` of the VQA API): every answer, human or
predicted, is normalised with :func:`normalize_answer` (so "two", "2" and "2." are one
answer of the vocabulary), and a prediction that ``k`` of the ``N`` human answers match
scores the mean over the ``N`` leave-one-out subsets of ``min(1, matches / 3)``
(:func:`vqa_accuracy`). The training targets stay the soft scores ``min(k / 3, 1)``
(:func:`soft_scores`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from vlkit.data.bad_samples import report_bad_rows
from vlkit.data.base import SplitDataModule
from vlkit.data.batching import ImageRows, SkippedBatch, pad_with_mask, readable_samples
from vlkit.data.splits import load_splits
from vlkit.metrics.vqa import answer_accuracies, normalize_answer, vqa_accuracy
from vlkit.text.tokenizer import WordTokenizer

__all__ = [
    "VQABatch",
    "VQADataModule",
    "answer_accuracies",
    "answer_list",
    "normalize_answer",
    "soft_scores",
    "vqa_accuracy",
]

log = logging.getLogger(__name__)


class VQABatch(NamedTuple):
    """A collated VQA batch.

    Attributes:
        image: ``(b, 3, H, W)`` float32, ImageNet-normalised.
        question_ids: ``(b, l)`` int64 token ids, right-padded with 0.
        question_mask: ``(b, l)`` bool, True for real tokens.
        label: ``(b,)`` int64 index of the most common answer, ``-100`` if it is not in the
            answer vocabulary.
        scores: ``(b, K)`` float32 soft training targets ``min(#annotators / 3, 1)`` (one-hot
            with a single answer).
        accuracy: ``(b, K)`` float32 in ``[0, 1]``: the official VQA accuracy each answer of the
            vocabulary would score on the row (:func:`answer_accuracies`); the metric reads it.
        multi_answer: whether rows have several human answers (BCE on ``scores``) or one
            (cross-entropy on ``label``).
        num_skipped: samples of this batch skipped as unreadable (``on_bad_sample="skip"``).
    """

    image: Tensor
    question_ids: Tensor
    question_mask: Tensor
    label: Tensor
    scores: Tensor
    accuracy: Tensor
    multi_answer: bool
    num_skipped: int


def answer_list(value: Any) -> list[str]:
    """Read one row's answer cell as a list of answers, each normalised (:func:`normalize_answer`).

    Accepts a string (one answer), a list of strings, a list of ``{"answer": str, ...}``
    dicts (VQAv2 rows) or a dict of lists ``{"answer": [str, ...], ...}`` (how ``datasets``
    returns a sequence of dicts); None and empty answers are dropped.

    Raises:
        ValueError: for any other type, or a row with no answer.
    """
    answers = _answers(value)
    if not answers:
        raise ValueError("the row has no non-empty answer")
    return answers


def _answers(value: Any) -> list[str]:
    """:func:`answer_list`, but an empty list for a missing cell (None) or a row with no answer."""
    if value is None:
        return []
    if isinstance(value, str):
        answers = [value]
    elif isinstance(value, dict) and isinstance(value.get("answer"), list):
        answers = value["answer"]
    elif isinstance(value, list) and all(isinstance(a, dict) and "answer" in a for a in value):
        answers = [a["answer"] for a in value]
    elif isinstance(value, list) and all(a is None or isinstance(a, str) for a in value):
        answers = value
    else:
        raise ValueError(
            f"cannot read answers from {value!r}: expected a string, a list of strings, or a list "
            "of {'answer': ...} dicts"
        )
    return [normalize_answer(a) for a in answers if a is not None and str(a).strip()]


def soft_scores(answers: list[str], index: dict[str, int]) -> dict[int, float]:
    """Soft training targets ``min(#annotators who gave a / 3, 1)`` for in-vocabulary answers.

    The usual BCE targets (Teney et al., CVPR 2018, arXiv:1708.02711), not the official accuracy
    (:func:`answer_accuracies`). With a single answer the score of that answer is 1 (plain
    classification).
    """
    counts = Counter(answers)
    if len(answers) == 1:
        return {index[answers[0]]: 1.0} if answers[0] in index else {}
    return {index[a]: min(c / 3.0, 1.0) for a, c in counts.items() if a in index}


@dataclass
class _Split:
    """The prepared text side of one split."""

    name: str
    rows: list[int]  # row indices into the HF split
    question_ids: list[list[int]]
    label: list[int]
    scores: list[dict[int, float]]  # soft training targets
    accuracy: list[dict[int, float]]  # official VQA accuracy of each answer


class _VQADataset(ImageRows):
    def fields(self, i: int) -> tuple:
        split = self.split
        return split.question_ids[i], split.label[i], split.scores[i], split.accuracy[i]


def _collate(samples: list, num_answers: int, multi_answer: bool) -> VQABatch | SkippedBatch:
    batch = readable_samples(samples)
    if isinstance(batch, SkippedBatch):  # every image unreadable
        return batch
    ids, labels, scores, accuracy = batch.fields
    question_ids, question_mask = pad_with_mask(ids)
    return VQABatch(
        batch.images,
        question_ids,
        question_mask,
        torch.tensor(labels),
        _dense(scores, num_answers),
        _dense(accuracy, num_answers),
        multi_answer,
        batch.num_skipped,
    )


def _dense(rows: tuple[dict[int, float], ...], num_answers: int) -> Tensor:
    """``(b, K)`` float32 from one ``{answer index: value}`` dict per row (0 elsewhere)."""
    matrix = torch.zeros(len(rows), num_answers)
    for row, values in enumerate(rows):
        for answer, value in values.items():
            matrix[row, answer] = value
    return matrix


@dataclass(eq=False)
class VQADataModule(SplitDataModule):
    """VQA from a Hugging Face ``DatasetDict``: column mapping, vocabularies, transforms, loaders.

    Everything data-dependent (question vocabulary, answer vocabulary) is built from the
    training split the first time it is needed, deterministically, so every process of a
    distributed run builds the same one. The fields shared by every task's DataModule
    (``dataset``, ``image_column``, the splits, ``image_size``, ``augment``, ``batch_size``, ...)
    are documented in :class:`vlkit.data.base.SplitDataModule`; the defaults here read the
    packaged easy-VQA (64-pixel images).

    Args:
        question_column: column with the question text.
        answer_column: column with the answer(s): one string, a list of strings, or VQAv2
            ``[{"answer": ...}, ...]`` lists (several answers → soft-score targets). Answers are
            normalised as the official VQA evaluation does (:func:`normalize_answer`).
        num_answers: K, the number of most frequent training answers kept as classes (>= 1).
        max_question_length: questions are truncated to this many tokens (>= 1).
        augment: random horizontal flips of training images. Off by default: a mirror image swaps
            left and right, so it changes the answer to position questions ("what is in the top
            left?") and to questions about text, and teaches wrong answers. Turn it on only for
            data whose answers do not depend on left and right (easy-VQA's recipe does).

    Raises:
        ValueError: invalid arguments, a missing split or column (the message lists those
            available), an empty split, answers of an unknown layout, or a split with no usable
            row.
        BadSampleError: an empty or missing question or answer, or an unreadable image, with
            ``on_bad_sample="error"``.
    """

    dataset: Any = "easy_vqa"
    image_size: int = 64
    batch_size: int = 64
    question_column: str = "question"
    answer_column: str = "answer"
    num_answers: int = 1000
    max_question_length: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_answers < 1 or self.max_question_length < 1:
            raise ValueError(
                f"num_answers and max_question_length must be >= 1, got {self.num_answers} and "
                f"{self.max_question_length}"
            )
        self.tokenizer: WordTokenizer | None = None
        self._answers: list[str] = []
        self._multi_answer = False

    @property
    def text_length_limit(self) -> int:
        return self.max_question_length

    # -- data-dependent vocabularies (linked into the task by the CLI) ------------------
    @property
    def vocabulary(self) -> list[str]:
        """The question vocabulary built from the training split (``<pad>``, ``<unk>`` first)."""
        self._prepare()
        return self.tokenizer.vocabulary

    @property
    def answers(self) -> list[str]:
        """The answer vocabulary: the top-K training answers, most frequent first."""
        self._prepare()
        return self._answers

    @property
    def multi_answer(self) -> bool:
        """True when training rows have several human answers (soft-score targets)."""
        self._prepare()
        return self._multi_answer

    # -- preparation ----------------------------------------------------------------------
    def _rows(self, name: str, split: Any) -> tuple[list[int], list[str], list[list[str]]]:
        """Usable rows, their questions and answers; an empty or missing question or answer
        follows ``on_bad_sample``.

        Raises:
            BadSampleError: such rows with ``on_bad_sample="error"``.
            ValueError: an answer cell of another layout (see :func:`answer_list`), or no usable row.
        """
        rows, questions, answers, empty, unanswered = [], [], [], [], []
        for row, (question, cell) in enumerate(zip(split[self.question_column], split[self.answer_column])):
            if question is not None and not isinstance(question, str):
                raise ValueError(
                    f"split {name!r}, row {row}, column {self.question_column!r}: a question must be text, "
                    f"got {type(question).__name__} {question!r}; is question_column the right column?"
                )
            if question is None or not WordTokenizer.split(question):
                empty.append(row)
                continue
            try:
                given = _answers(cell)
            except ValueError as err:
                raise ValueError(f"split {name!r}, row {row}, column {self.answer_column!r}: {err}") from err
            if not given:
                unanswered.append(row)
                continue
            rows.append(row)
            questions.append(question)
            answers.append(given)
        policy = self.on_bad_sample
        report_bad_rows(name, self.question_column, "an empty or missing question", empty, policy)
        report_bad_rows(name, self.answer_column, "an empty or missing answer", unanswered, policy)
        self.skipped_rows[name] = sorted(empty + unanswered)
        if not rows:
            raise ValueError(f"split {name!r} has no usable row (every row had no question or no answer)")
        return rows, questions, answers

    def _prepare(self) -> None:
        if self._prepared:
            return
        hf = load_splits(
            self.dataset,
            self.dataset_config,
            self.split_names,
            {
                "image_column": self.image_column,
                "question_column": self.question_column,
                "answer_column": self.answer_column,
            },
            self.val_fraction,
            self.seed,
            self.max_samples,
        )

        self.skipped_rows: dict[str, list[int]] = {}
        text = {name: self._rows(name, split) for name, split in hf.items()}
        answers = {name: text[name][2] for name in hf}

        self._multi_answer = any(len(a) > 1 for a in answers["train"])
        # an answer normalised to nothing ("the") still counts as a human answer, but is no class
        counts = Counter(a for row in answers["train"] for a in row if a)
        self._answers = [a for a, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0]))][
            : self.num_answers
        ]
        index = {a: i for i, a in enumerate(self._answers)}
        self.tokenizer = WordTokenizer.from_corpus(text["train"][1], min_freq=self.min_word_freq)

        for name in hf:
            rows, questions, _ = text[name]
            split = _Split(name, [], [], [], [], [])
            out_of_vocab = 0
            for row, question, row_answers in zip(rows, questions, answers[name]):
                scores = soft_scores(row_answers, index)
                if not scores:
                    out_of_vocab += 1
                    if name == "train":
                        continue
                top = Counter(row_answers).most_common(1)[0][0]
                split.rows.append(row)
                split.question_ids.append(self.tokenizer.encode(question, self.max_question_length))
                split.label.append(index.get(top, -100))
                split.scores.append(scores)
                split.accuracy.append(answer_accuracies(row_answers, index))
            if out_of_vocab:
                action = "left out of training" if name == "train" else "kept (they score 0)"
                log.warning(
                    "split %r: %d question(s) have no answer among the top-%d answers: %s",
                    name,
                    out_of_vocab,
                    len(self._answers),
                    action,
                )
            self._splits[name] = split
        self.out_of_vocab = {name: len(text[name][0]) - len(s.rows) for name, s in self._splits.items()}
        self._hf = hf
        self._prepared = True
        log.info(
            "VQA data: %s questions, %d answers (%s), %d words; answers normalised and scored as the "
            "official VQA evaluation does",
            {k: len(v.rows) for k, v in self._splits.items()},
            len(self._answers),
            "soft-score targets" if self._multi_answer else "single answer",
            len(self.tokenizer),
        )
        if self.augment:
            log.info(
                "augment=True: training images are flipped at random, which swaps left and right; "
                "answers that depend on them (position questions, text) are then wrong for the mirror image"
            )

    # -- what SplitDataModule builds the loaders from ----------------------------------------
    def _dataset(self, name: str, transform) -> _VQADataset:
        return _VQADataset(
            self._hf[name], self._splits[name], self.image_column, transform, self.on_bad_sample
        )

    def _collate_fn(self) -> _CollateFn:
        return _CollateFn(len(self._answers), self._multi_answer)


class _CollateFn:
    """Picklable collate (for worker processes)."""

    def __init__(self, num_answers: int, multi_answer: bool) -> None:
        self.num_answers, self.multi_answer = num_answers, multi_answer

    def __call__(self, samples: list) -> VQABatch | SkippedBatch:
        return _collate(samples, self.num_answers, self.multi_answer)
