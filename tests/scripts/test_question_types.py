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


def test_yes_no_questions_are_split_by_subject_and_presence():
    kinds = [
        question_types.yes_no_kind(q, a)
        for q, a in [
            ("is there a red shape?", "no"),
            ("is there not a red shape in the image?", "no"),
            ("is no blue shape present?", "yes"),
            ("does the image contain a circle?", "yes"),
            ("does the image not contain a rectangle?", "yes"),
        ]
    ]
    assert kinds == ["colour absent", "colour present", "colour absent", "shape present", "shape absent"]
    with pytest.raises(ValueError, match="not a yes/no answer"):
        question_types.yes_no_kind("what color is the shape?", "red")
    # a model that answers "no" to every positive question
    questions = ["is there a red shape?", "is there a red shape?", "is there not a circle?", "what shape?"]
    answers = ["yes", "no", "no", "circle"]
    accuracy = question_types.type_accuracy(answers, ["no", "no", "no", "circle"], questions)
    assert accuracy["colour present"] == 0.0 and accuracy["colour absent"] == 1.0
    assert accuracy["shape present"] == 1.0 and "shape absent" not in accuracy
    assert accuracy["yes/no"] == 2 / 3
