"""VQA accuracy (Antol et al., ICCV 2015, arXiv:1505.00468) as torchmetrics metrics."""

from __future__ import annotations

import re
from collections import Counter

import torch
from torch import Tensor
from torchmetrics import Metric

__all__ = ["ExactMatchAccuracy", "VQAAccuracy", "answer_accuracies", "normalize_answer", "vqa_accuracy"]


# -- the official answer normalisation (vqaEval.py of the VQA API, Antol et al., ICCV 2015) ----------
#: Marks that become a space, or vanish when the answer has one beside a space or has a digit-comma-digit.
_PUNCTUATION = ";:/'[]\"()=+\\_><@`,?"
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# The official pattern means "a period not between digits", but its first group is a look-ahead that
# always passes, so what it does is: drop every period not followed by a digit ("2.5" stays, "yes." and
# "1." lose it). It also passes re.UNICODE (= 32) where ``sub`` takes the count: at most 32 are dropped.
_PERIOD = re.compile(r"\.(?!\d)")
_MAX_PERIODS = 32
_NUMBER_WORDS = {
    word: str(value)
    for value, word in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    )
}
_NUMBER_WORDS["none"] = "0"
_ARTICLES = frozenset(("a", "an", "the"))
# The official contractions table as ``key=value`` entries (its mix of ' and ’ kept). Keys with a
# capital letter never match (the answer is lower-cased first), nor do keys with a straight ' (step 2
# has removed it): kept to be the same table.
_CONTRACTIONS = dict(
    entry.split("=")
    for entry in """
    Id’ve=I’d’ve Im=I’m Ive=I’ve I’dve=I’d’ve aint=ain't arent=aren't cant=can't couldn'tve=couldn’t’ve
    couldnt=couldn't couldnt’ve=couldn’t’ve couldve=could've didnt=didn’t doesnt=doesn’t dont=don’t
    hadn'tve=hadn’t’ve hadnt=hadn’t hadnt’ve=hadn’t’ve hasnt=hasn’t havent=haven’t hed=he’d
    hed’ve=he’d’ve hes=he’s he’dve=he’d’ve howd=how’d howll=how’ll hows=how’s isnt=isn’t itd=it’d
    itd’ve=it’d’ve itll=it’ll it’dve=it’d’ve let’s=let’s maam=ma’am mightnt=mightn’t
    mightnt’ve=mightn’t’ve mightn’tve=mightn’t’ve mightve=might’ve mustnt=mustn’t mustve=must’ve
    neednt=needn’t notve=not’ve oclock=o’clock oughtnt=oughtn’t ow’s’at=’ow’s’at shant=shan’t
    shed’ve=she’d’ve she’dve=she’d’ve she’s=she’s shouldnt=shouldn’t shouldnt’ve=shouldn’t’ve
    shouldn’tve=shouldn’t’ve shouldve=should’ve somebodyd’ve=somebody’d’ve somebodyll=somebody’ll
    somebodys=somebody’s somebody’d=somebodyd somebody’dve=somebody’d’ve someoned=someone’d
    someoned’ve=someone’d’ve someonell=someone’ll someones=someone’s someone’dve=someone’d’ve
    somethingd=something’d somethingd’ve=something’d’ve somethingll=something’ll
    something’dve=something’d’ve thats=that’s thered=there’d thered’ve=there’d’ve therere=there’re
    theres=there’s there’dve=there’d’ve theyd=they’d theyd’ve=they’d’ve theyll=they’ll theyre=they’re
    theyve=they’ve they’dve=they’d’ve twas=’twas wasnt=wasn’t wed’ve=we’d’ve werent=weren’t weve=we've
    we’dve=we’d’ve whatll=what’ll whatre=what’re whats=what’s whatve=what’ve whens=when’s whered=where’d
    wheres=where's whereve=where’ve whod=who’d whod’ve=who’d’ve wholl=who’ll whos=who’s whove=who've
    who’dve=who’d’ve whyll=why’ll whyre=why’re whys=why’s wont=won’t wouldnt=wouldn’t
    wouldnt’ve=wouldn’t’ve wouldn’tve=wouldn’t’ve wouldve=would’ve yall=y’all yall’d’ve=y’all’d’ve
    yall’ll=y’all’ll youd=you’d youd’ve=you’d’ve youll=you’ll youre=you’re youve=you’ve you’dve=you’d’ve
    y’alld’ve=y’all’d’ve y’allll=y’all’ll y’all’dve=y’all’d’ve ’ows’at=’ow’s’at ’ow’sat=’ow’s’at
    """.split()  # noqa: SIM905 (a compact table)
)


def normalize_answer(answer: str) -> str:
    """An answer as the official VQA evaluation compares it (``vqaEval.py`` of the VQA API).

    The steps of the official code, in its order:

    1. newlines and tabs become spaces, and the ends are stripped;
    2. punctuation: each of ``; : / ' [ ] " ( ) = + \\ _ > < @ ` , ?`` is deleted when the
       original answer has that mark beside a space, or has a digit-comma-digit anywhere
       ("1,000" -> "1000"), else it becomes a space ("black/white" -> "black white");
    3. a period not followed by a digit is deleted ("yes." -> "yes", "2.5" stays);
    4. lower case, split on whitespace, number words ``none zero one … ten`` become digits,
       the articles ``a an the`` are dropped, and contractions written without an apostrophe
       get it back ("dont" -> "don’t", the official table); the words are joined by one space.

    Hyphens and exclamation marks are not in the official list and stay. The official script
    runs all four steps on the prediction but only steps 2–3 on the human answers (when they
    differ), which it expects normalised already; vlkit runs the same function on the human
    answers, the answer vocabulary and the predictions, so that with any dataset "two", "2"
    and "2." are one answer.

    Args:
        answer: any answer (converted with ``str``).

    Returns:
        The normalised answer (may be ``""``, e.g. for ``"the"``).
    """
    text = str(answer).replace("\n", " ").replace("\t", " ").strip()
    delete = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in _PUNCTUATION:
        gone = delete or f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if gone else " ")
    out = _PERIOD.sub("", out, count=_MAX_PERIODS)
    words = (_NUMBER_WORDS.get(word, word) for word in out.lower().split())
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


def _leave_one_out(matches: int, total: int) -> float:
    """The official accuracy of an answer ``matches`` of ``total`` humans gave (``total >= 2``): the mean
    over the ``total`` subsets of ``total - 1`` humans of ``min(1, humans in the subset who gave it / 3)``."""
    return (matches * min(1.0, (matches - 1) / 3) + (total - matches) * min(1.0, matches / 3)) / total


def vqa_accuracy(prediction: str, answers: list[str]) -> float:
    """The official VQA accuracy of one predicted answer (Antol et al., ICCV 2015, arXiv:1505.00468).

    The prediction and the human answers are normalised alike (:func:`normalize_answer`). With
    ``N >= 2`` human answers of which ``k`` equal the prediction, the score is the mean over the
    ``N`` leave-one-out subsets of ``min(1, matches / 3)`` (``vqaEval.py`` of the VQA API):
    ``[k · min(1, (k − 1) / 3) + (N − k) · min(1, k / 3)] / N``, i.e. 0, 0.3, 0.6, 0.9 and 1 for
    ``k = 0, 1, 2, 3, >= 4`` with ``N = 10``, and 0, 2/9, 4/9, 2/3 for ``k = 0…3`` with ``N = 3``.
    With a single human answer the leave-one-out mean would be 0 for every prediction, so the
    score is exact match (1 or 0), as for single-answer data such as easy-VQA.

    Args:
        prediction: the predicted answer.
        answers: the human answers of the question.

    Returns:
        The accuracy, in ``[0, 1]``.

    Raises:
        ValueError: ``answers`` is empty.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one human answer")
    given = [normalize_answer(a) for a in answers]
    matches = given.count(normalize_answer(prediction))
    return float(matches) if len(given) == 1 else _leave_one_out(matches, len(given))


def answer_accuracies(answers: list[str], index: dict[str, int]) -> dict[int, float]:
    """The official VQA accuracy (:func:`vqa_accuracy`) of each in-vocabulary answer on one question.

    Args:
        answers: the question's human answers, already normalised (:func:`normalize_answer`).
        index: answer vocabulary, ``{normalised answer: class index}``.

    Returns:
        ``{class index: accuracy}`` for the answers some human gave (every other answer scores 0).
    """
    counts = Counter(answers)
    if len(answers) == 1:
        return {index[answers[0]]: 1.0} if answers[0] in index else {}
    return {index[a]: _leave_one_out(c, len(answers)) for a, c in counts.items() if a in index}


def _check(preds: Tensor, other: Tensor, name: str) -> None:
    if preds.dim() != 1 or preds.is_floating_point():
        raise ValueError(f"preds must be (b,) integer answer indices, got {preds.dtype} {tuple(preds.shape)}")
    if other.shape[0] != preds.shape[0]:
        raise ValueError(f"preds and {name} disagree on batch size: {preds.shape[0]} vs {other.shape[0]}")


class VQAAccuracy(Metric):
    """VQA accuracy as the official evaluation computes it, averaged over questions, in ``[0, 1]``.

    The official evaluation (Antol et al., "VQA: Visual Question Answering", ICCV 2015,
    arXiv:1505.00468; ``vqaEval.py`` of the VQA API) normalises the prediction and the ``N``
    human answers alike and, when ``k`` of them match the prediction, scores the mean over the
    ``N`` leave-one-out subsets of ``min(1, matches / 3)``:
    ``[k · min(1, (k − 1) / 3) + (N − k) · min(1, k / 3)] / N`` (0, 0.3, 0.6, 0.9, 1 for
    ``k = 0, 1, 2, 3, >= 4`` of ``N = 10``; exact match with a single answer). The metric takes
    that score of every answer of the vocabulary per question (``VQABatch.accuracy``, computed
    by :class:`vlkit.data.VQADataModule` with :func:`vlkit.metrics.vqa.answer_accuracies`) and
    averages the score of the predicted one. It is not the soft training target
    ``min(k / 3, 1)`` (``VQABatch.scores``), which gives 1/3, 2/3, 1 for ``k = 1, 2, 3``.

    ``update(preds: (b,) int64 answer indices, accuracy: (b, K) float in [0, 1])``;
    ``compute() -> ()`` float. Synchronised across processes like every torchmetrics metric.

    Raises:
        ValueError: on mismatched shapes.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total_score", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, accuracy: Tensor) -> None:
        _check(preds, accuracy, "accuracy")
        self.total_score += accuracy.gather(1, preds[:, None]).sum().double()
        self.count += preds.shape[0]

    def compute(self) -> Tensor:
        return (self.total_score / self.count.clamp(min=1)).float()


class ExactMatchAccuracy(Metric):
    """Fraction of predictions equal to the reference label (the most common answer), in ``[0, 1]``.

    Labels of ``-100`` (answer outside the vocabulary) count as wrong, never as ignored.

    ``update(preds: (b,) int64, labels: (b,) int64)``; ``compute() -> ()`` float.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, labels: Tensor) -> None:
        _check(preds, labels, "labels")
        self.correct += (preds == labels).sum()
        self.count += preds.shape[0]

    def compute(self) -> Tensor:
        return self.correct.float() / self.count.clamp(min=1).float()
