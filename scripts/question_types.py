"""Test accuracy of easy-VQA checkpoints per question type: shape, colour and yes/no.

Usage:
    python scripts/question_types.py --ckpt runs/ablation/none_seed0 runs/ablation/cbam-output_seed2 \
        [--dataset easy_vqa_cluttered] [--limit 1000]

easy-VQA asks three kinds of question: "What shape is ...?" (answer: a shape), "What color is
...?" (a colour) and "Is there a ...?" / "Does the image contain ...?" (yes / no). A model that
answers the first two and half-learns the third plateaus near 0.93 overall: this script tells
which kind a run has not learned. The type is read from the answer (yes / no, one of the three
shapes, else a colour), which easy-VQA's questions determine. The first ``--limit`` test
questions of ``--dataset`` are read (images at the checkpoint's size and normalisation) and the
model's argmax answer is compared with the reference; one row per checkpoint.
"""

from __future__ import annotations

import argparse

import torch

SHAPES = ("circle", "rectangle", "triangle")
TYPES = ("shape", "colour", "yes/no")


def question_type(answer: str) -> str:
    """``"yes/no"``, ``"shape"`` or ``"colour"``: the kind of easy-VQA question ``answer`` answers."""
    if answer in ("yes", "no"):
        return "yes/no"
    return "shape" if answer in SHAPES else "colour"


def type_accuracy(answers: list[str], predictions: list[str]) -> dict[str, float]:
    """Accuracy per question type over paired reference ``answers`` and ``predictions``."""
    hits: dict[str, list[bool]] = {kind: [] for kind in TYPES}
    for answer, predicted in zip(answers, predictions, strict=True):
        hits[question_type(answer)].append(answer == predicted)
    return {kind: sum(v) / len(v) for kind, v in hits.items() if v}


def measure(ckpt: str, dataset: str, limit: int, batch_size: int = 200) -> dict[str, float]:
    from vlkit.cli.runs import resolve_checkpoint
    from vlkit.data import load_dataset_dict, load_image
    from vlkit.tasks import load_task

    task = load_task(resolve_checkpoint(ckpt)).eval()
    transform = task.preprocessing.image_transform()  # as the task evaluates
    test = load_dataset_dict(dataset)["test"]
    rows = test.select(range(min(limit, len(test))))
    answers, predictions = [], []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows.select(range(start, min(start + batch_size, len(rows))))
            images = torch.stack([transform(load_image(cell)) for cell in batch["image"]])
            ids, mask = task.encode_questions(batch["question"])
            logits = task(images, ids, mask).logits
            predictions += [task.hparams["answers"][k] for k in logits.argmax(1).tolist()]
            answers += batch["answer"]
    return type_accuracy(answers, predictions)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="checkpoints or run folders")
    parser.add_argument(
        "--dataset", default="easy_vqa", help="packaged easy-VQA source of the test questions"
    )
    parser.add_argument("--limit", type=int, default=1000, help="test questions read")
    args = parser.parse_args(argv)
    print("| checkpoint | " + " | ".join(TYPES) + " |\n|---|" + "---|" * len(TYPES))
    rows = []
    for ckpt in args.ckpt:
        accuracy = measure(ckpt, args.dataset, args.limit)
        rows.append({"checkpoint": ckpt, **accuracy})
        print(f"| {ckpt} | " + " | ".join(f"{accuracy.get(k, float('nan')):.3f}" for k in TYPES) + " |")
    return rows


if __name__ == "__main__":
    main()
