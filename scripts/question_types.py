"""Test accuracy of easy-VQA checkpoints per question type: shape, colour and yes/no.

Usage:
    python scripts/question_types.py --ckpt runs/ablation/none_seed0 runs/ablation/cbam-output_seed2 \
        [--dataset easy_vqa_cluttered] [--limit 1000]

easy-VQA asks three kinds of question: "What shape is ...?" (answer: a shape), "What color is
...?" (a colour) and "Is there a ...?" / "Does the image contain ...?" (yes / no). A model that
answers the first two and half-learns the third plateaus near 0.93 overall: this script tells
which kind a run has not learned. The type is read from the answer (yes / no, one of the three
shapes, else a colour), which easy-VQA's questions determine. Yes/no questions are also split by
what they ask about (a shape name in the question, else a colour) and whether that is in the
image (the answer, flipped for negated questions: "is there not a red shape?", "is no circle
present?"): a model that answers "no" to every "is there a <colour> shape?" — the answer for 7
colours of 8 — scores 0 on "colour present" and 1 on "colour absent". The first ``--limit`` test
questions of ``--dataset`` are read (images at the checkpoint's size and normalisation) and the
model's argmax answer is compared with the reference; one row per checkpoint.
"""

from __future__ import annotations

import argparse
import re

import torch

SHAPES = ("circle", "rectangle", "triangle")
TYPES = ("shape", "colour", "yes/no")
#: yes/no questions by subject and by whether the subject is in the image
YES_NO_KINDS = ("colour present", "colour absent", "shape present", "shape absent")


def question_type(answer: str) -> str:
    """``"yes/no"``, ``"shape"`` or ``"colour"``: the kind of easy-VQA question ``answer`` answers."""
    if answer in ("yes", "no"):
        return "yes/no"
    return "shape" if answer in SHAPES else "colour"


def yes_no_kind(question: str, answer: str) -> str:
    """One of :data:`YES_NO_KINDS` for an easy-VQA yes/no ``question`` with reference ``answer``.

    Raises:
        ValueError: ``answer`` is not "yes" or "no".
    """
    if answer not in ("yes", "no"):
        raise ValueError(f"not a yes/no answer: {answer!r}")
    words = re.findall(r"[a-z]+", question.lower())
    subject = "shape" if any(shape in words for shape in SHAPES) else "colour"
    negated = "not" in words or "no" in words
    present = (answer == "yes") != negated
    return f"{subject} {'present' if present else 'absent'}"


def type_accuracy(
    answers: list[str], predictions: list[str], questions: list[str] | None = None
) -> dict[str, float]:
    """Accuracy per question type over paired reference ``answers`` and ``predictions``; with the
    ``questions``, also per :func:`yes_no_kind` of the yes/no ones."""
    hits: dict[str, list[bool]] = {kind: [] for kind in (*TYPES, *YES_NO_KINDS)}
    for i, (answer, predicted) in enumerate(zip(answers, predictions, strict=True)):
        hits[question_type(answer)].append(answer == predicted)
        if questions is not None and question_type(answer) == "yes/no":
            hits[yes_no_kind(questions[i], answer)].append(answer == predicted)
    return {kind: sum(v) / len(v) for kind, v in hits.items() if v}


def measure(ckpt: str, dataset: str, limit: int, batch_size: int = 200) -> dict[str, float]:
    from vlkit.cli.runs import resolve_checkpoint
    from vlkit.data import load_dataset_dict, load_image
    from vlkit.tasks import load_task

    task = load_task(resolve_checkpoint(ckpt)).eval()
    transform = task.preprocessing.image_transform()  # as the task evaluates
    test = load_dataset_dict(dataset)["test"]
    rows = test.select(range(min(limit, len(test))))
    answers, predictions, questions = [], [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows.select(range(start, min(start + batch_size, len(rows))))
            images = torch.stack([transform(load_image(cell)) for cell in batch["image"]])
            ids, mask = task.encode_questions(batch["question"])
            logits = task(images, ids, mask).logits
            predictions += [task.hparams["answers"][k] for k in logits.argmax(1).tolist()]
            answers += batch["answer"]
            questions += batch["question"]
    return type_accuracy(answers, predictions, questions)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="checkpoints or run folders")
    parser.add_argument(
        "--dataset", default="easy_vqa", help="packaged easy-VQA source of the test questions"
    )
    parser.add_argument("--limit", type=int, default=1000, help="test questions read")
    args = parser.parse_args(argv)
    columns = (*TYPES, *(f"yes/no {kind}" for kind in YES_NO_KINDS))
    print("| checkpoint | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
    rows = []
    for ckpt in args.ckpt:
        accuracy = measure(ckpt, args.dataset, args.limit)
        rows.append({"checkpoint": ckpt, **accuracy})
        cells = [accuracy.get(kind, float("nan")) for kind in (*TYPES, *YES_NO_KINDS)]
        print(f"| {ckpt} | " + " | ".join(f"{value:.3f}" for value in cells) + " |")
    return rows


if __name__ == "__main__":
    main()
