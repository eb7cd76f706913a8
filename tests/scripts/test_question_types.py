"""scripts/question_types.py: easy-VQA accuracy per question type."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
import question_types


def test_the_answer_gives_the_question_type():
    assert [question_types.question_type(a) for a in ("yes", "no", "circle", "triangle", "teal")] == [
        "yes/no",
        "yes/no",
        "shape",
        "shape",
        "colour",
    ]


def test_accuracy_is_counted_per_type():
    answers = ["yes", "no", "circle", "red", "red"]
    predictions = ["yes", "yes", "circle", "red", "blue"]
    assert question_types.type_accuracy(answers, predictions) == {"shape": 1.0, "colour": 0.5, "yes/no": 0.5}
    with pytest.raises(ValueError):
        question_types.type_accuracy(answers, predictions[:2])
