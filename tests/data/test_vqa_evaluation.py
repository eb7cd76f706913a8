"""The official VQA evaluation (Antol et al., ICCV 2015; vqaEval.py of the VQA API): answer
normalisation and the leave-one-out accuracy, from the function to the logged metric."""

from __future__ import annotations

from types import SimpleNamespace

import datasets
import pytest
import torch

from tests.conftest import shape_png
from tests.parts import VQA_PARTS
from vlkit.data import VQADataModule
from vlkit.data.vqa import answer_accuracies, normalize_answer, vqa_accuracy
from vlkit.metrics import VQAAccuracy
from vlkit.tasks import VQATask

# Hand-computed [k·min(1, (k−1)/3) + (N−k)·min(1, k/3)] / N with N = 10:
# k=1: 9·(1/3)/10 = 0.3; k=2: (2·1/3 + 8·2/3)/10 = 0.6; k=3: (3·2/3 + 7)/10 = 0.9; k>=4: 1.
TEN_ANSWERS = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9, 4: 1.0, 5: 1.0, 6: 1.0, 7: 1.0, 8: 1.0, 9: 1.0, 10: 1.0}
# N = 3 (Hub copies with three answers): k=1: 2·(1/3)/3 = 2/9; k=2: (2·1/3 + 2/3)/3 = 4/9; k=3: 3·(2/3)/3 = 2/3.
THREE_ANSWERS = {0: 0.0, 1: 2 / 9, 2: 4 / 9, 3: 2 / 3}


@pytest.mark.parametrize(("k", "expected"), sorted(TEN_ANSWERS.items()))
def test_official_accuracy_of_k_matching_answers_out_of_ten(k, expected):
    answers = ["red"] * k + ["blue"] * (10 - k)
    assert vqa_accuracy("red", answers) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("k", "expected"), sorted(THREE_ANSWERS.items()))
def test_official_accuracy_with_three_answers(k, expected):
    answers = ["red"] * k + ["blue", "green", "pink"][: 3 - k]
    assert vqa_accuracy("red", answers) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("total", range(2, 11))
def test_accuracy_is_the_mean_over_the_leave_one_out_subsets(total):
    # the definition: for each human left out, min(1, matches among the others / 3); then the mean
    for k in range(total + 1):
        answers = ["yes"] * k + ["no"] * (total - k)
        subsets = [answers[:i] + answers[i + 1 :] for i in range(total)]
        expected = sum(min(1.0, s.count("yes") / 3) for s in subsets) / total
        assert vqa_accuracy("yes", answers) == pytest.approx(expected, abs=1e-12)


def test_one_human_answer_scores_exact_match():
    assert vqa_accuracy("Circle", ["circle"]) == 1.0 and vqa_accuracy("square", ["circle"]) == 0.0
    with pytest.raises(ValueError, match="at least one human answer"):
        vqa_accuracy("circle", [])


# What vqaEval.py makes of an answer (processPunctuation, then processDigitArticle), worked by hand.
OFFICIAL_NORMALISATION = [
    ("yes.", "yes"),  # a period not before a digit is dropped
    ("Yes", "yes"),
    ("2.5", "2.5"),  # ... but one before a digit stays
    ("1.", "1"),
    ("two", "2"),  # number words become digits
    ("Ten", "10"),
    ("none", "0"),
    ("zero", "0"),
    ("the dog", "dog"),  # articles are dropped
    ("a red car", "red car"),
    ("an apple", "apple"),
    ("dont", "don’t"),  # contractions get their apostrophe (the official table: ’ here ...)
    ("cant", "can't"),  # (... ' there)
    ("isnt", "isn’t"),
    ("oclock", "o’clock"),
    ("can't", "can t"),  # an apostrophe not beside a space becomes a space
    ("1,000", "1000"),  # digit-comma-digit: every listed mark is deleted, not spaced
    ("black/white", "black white"),  # a mark with no space beside it becomes a space
    ("black / white", "black white"),  # a mark beside a space is deleted
    ("red, white", "red white"),
    ("what?", "what"),
    ("(left)", "left"),
    ("x-ray", "x-ray"),  # hyphen and exclamation mark are not in the official list
    ("yes!", "yes!"),
    ("  Two\tdogs\n", "2 dogs"),  # tabs and newlines are spaces; runs of spaces collapse
]


@pytest.mark.parametrize(("raw", "expected"), OFFICIAL_NORMALISATION)
def test_answers_are_normalised_as_the_official_evaluation_does(raw, expected):
    assert normalize_answer(raw) == expected


def test_the_prediction_is_normalised_like_the_human_answers():
    assert vqa_accuracy("two", ["2"] * 10) == 1.0
    assert vqa_accuracy("2", ["two"] * 10) == 1.0
    assert vqa_accuracy("Yes.", ["yes"] * 2 + ["no"] * 8) == pytest.approx(0.6)
    assert vqa_accuracy("the dog", ["dog", "a dog", "dogs"]) == pytest.approx(4 / 9)


def test_answer_accuracies_give_each_vocabulary_answer_its_official_score():
    index = {"2": 0, "3": 1, "4": 2}
    given = [normalize_answer(a) for a in ["two"] * 2 + ["2"] + ["3"] * 6 + ["five"]]
    assert answer_accuracies(given, index) == {0: pytest.approx(0.9), 1: 1.0}  # "4": nobody, "5": no class
    assert answer_accuracies(["3"], index) == {1: 1.0}  # one answer: exact match


# -- the DataModule and the logged metric ----------------------------------------------------------------
ROWS = [  # ten answers, three answers, ten answers
    ["two"] * 2 + ["2"] + ["3"] * 7,
    ["red", "Red.", "blue"],
    ["yes"] + ["no"] * 9,
]


COLUMNS = {
    "image_column": "img",
    "question_column": "q",
    "answer_column": "answers",
    "image_size": 16,
    "batch_size": 3,
}


def _data() -> datasets.DatasetDict:
    def split():
        return datasets.Dataset.from_dict(
            {
                "img": [{"bytes": shape_png("red", "circle"), "path": None}] * 3,
                "q": ["how many?", "what color?", "is it?"],
                "answers": [[{"answer": a} for a in row] for row in ROWS],
            }
        ).cast_column("img", datasets.Image())

    return datasets.DatasetDict({"train": split(), "validation": split()})


def test_datamodule_merges_spellings_and_carries_the_official_accuracy():
    dm = VQADataModule(_data(), **COLUMNS)
    assert "two" not in dm.answers and "red." not in dm.answers
    assert set(dm.answers) == {"2", "3", "red", "blue", "yes", "no"}
    batch = next(iter(dm.val_dataloader()))
    index = {a: i for i, a in enumerate(dm.answers)}
    expected = torch.zeros(3, len(dm.answers))
    for row, scores in enumerate(
        [{"2": 0.9, "3": 1.0}, {"red": 4 / 9, "blue": 2 / 9}, {"yes": 0.3, "no": 1.0}]
    ):
        for answer, value in scores.items():
            expected[row, index[answer]] = value
    torch.testing.assert_close(batch.accuracy, expected)
    # the soft training targets stay min(k/3, 1): "2" three times -> 1, "yes" once -> 1/3
    assert batch.scores[0, index["2"]] == 1.0 and batch.scores[2, index["yes"]] == pytest.approx(1 / 3)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # _step called without a trainer
def test_the_task_logs_the_official_accuracy_not_the_soft_target():
    dm = VQADataModule(_data(), **COLUMNS)
    batch = next(iter(dm.val_dataloader()))
    index = {a: i for i, a in enumerate(dm.answers)}
    task = VQATask(**VQA_PARTS, vocabulary=dm.vocabulary, answers=dm.answers, multi_answer=True)
    # the model answers "2", "red" and "yes": official 0.9, 4/9, 0.3 (soft targets 1, 2/3, 1/3)
    logits = torch.zeros(3, len(dm.answers))
    for row, answer in enumerate(["2", "red", "yes"]):
        logits[row, index[answer]] = 5.0
    task.forward = lambda *args, **kwargs: SimpleNamespace(logits=logits)
    task._step(batch, "val")
    assert task.vqa_acc["val_"].compute().item() == pytest.approx((0.9 + 4 / 9 + 0.3) / 3)


def test_metric_averages_the_accuracy_of_the_predicted_answers():
    metric = VQAAccuracy()
    accuracy = torch.tensor([[0.9, 1.0, 0.0], [0.0, 0.3, 0.6]])
    for preds, expected in ((torch.tensor([0, 2]), (0.9 + 0.6) / 2), (torch.tensor([1, 1]), (1.0 + 0.3) / 2)):
        metric.reset()
        metric.update(preds, accuracy)
        assert metric.compute().item() == pytest.approx(expected)
