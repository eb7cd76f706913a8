"""Does the VQA loss's gradient point a spatial transformer's window towards the shape?

Usage:
    python scripts/glimpse_gradient.py --ckpt runs/<run>/version_0/checkpoints/last.ckpt
        [--dataset easy_vqa_cluttered] [--limit 400]

For a ``VQATask`` checkpoint whose image encoder has an input spatial transformer (``stn: input``),
over the first ``--limit`` test questions of ``--dataset`` (``easy_vqa_cluttered``'s ``shape_box``
column, or the box of a plain ``easy_vqa`` image's shape): the gradient of each question's cross-entropy loss with
respect to the translation of θ (``θ[:, :, 2]``, normalised coordinates), against the direction
from the window's centre to the centre of the shape's box. Questions whose answer is not in the model's answer vocabulary have no loss and are left out
(their number is printed). Printed: the share of questions whose
descent direction (minus the gradient) points towards the shape (0.5 for a direction unrelated to
it), their mean cosine, and the mean gradient over all questions (the part every image shares) against
the mean per-question gradient's length.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F


def measure(ckpt: str, dataset: str, limit: int, batch_size: int = 100) -> dict[str, float]:
    from vlkit.cli.runs import resolve_checkpoint
    from vlkit.data import load_dataset_dict, load_image
    from vlkit.data.cluttered import shape_box
    from vlkit.tasks import load_task

    task = load_task(resolve_checkpoint(ckpt)).eval()
    if getattr(task.model.image_encoder, "input_stn", None) is None:
        raise ValueError(f"{ckpt}: the image encoder has no input spatial transformer (stn: input)")
    transform = task.preprocessing.image_transform()
    test = load_dataset_dict(dataset)["test"]
    rows = test.select(range(min(limit, len(test))))
    answers = {a: i for i, a in enumerate(task.hparams["answers"])}
    grads, towards, unknown = [], [], 0
    for start in range(0, len(rows), batch_size):
        batch = rows.select(range(start, min(start + batch_size, len(rows))))
        pictures = [load_image(cell) for cell in batch["image"]]
        images = torch.stack([transform(picture) for picture in pictures])
        # the shape's box: the cluttered source's shape_box column, else a plain image's shape
        boxes = batch["shape_box"] if "shape_box" in batch.column_names else [shape_box(p) for p in pictures]
        scale = torch.tensor([[p.width, p.height, p.width, p.height] for p in pictures], dtype=torch.float32)
        box = torch.tensor(boxes, dtype=torch.float32) / scale  # (b, 4) in [0, 1]
        centre = box[:, :2] + box[:, 2:] - 1  # (b, 2): the box's centre in [-1, 1] (x, y)
        ids, mask = task.encode_questions(batch["question"])
        captured = {}
        original = task.model.image_encoder.input_stn.transform_with

        def transform_with(x, theta, original=original, captured=captured):
            theta = theta.detach().requires_grad_(True)
            captured["theta"] = theta
            return original(x, theta)

        task.model.image_encoder.input_stn.transform_with = transform_with
        try:
            logits = task(images, ids, mask).logits
        finally:
            del task.model.image_encoder.input_stn.transform_with
        known = torch.tensor([a in answers for a in batch["answer"]])  # others have no loss
        target = torch.tensor([answers.get(a, 0) for a in batch["answer"]])
        F.cross_entropy(logits.float()[known], target[known], reduction="sum").backward()
        theta = captured["theta"]
        grads.append(theta.grad[known, :, 2].clone())  # d loss / d t, (b, 2)
        towards.append((centre - theta.detach()[:, :, 2])[known])  # window centre -> shape centre
        unknown += int((~known).sum())
    grad, direction = torch.cat(grads), torch.cat(towards)
    cosine = F.cosine_similarity(-grad, direction, dim=1)
    return {
        "questions": len(grad),
        "answers_not_in_vocabulary": unknown,
        "share_towards_shape": (cosine > 0).float().mean().item(),
        "mean_cosine": cosine.mean().item(),
        "mean_gradient_norm": grad.mean(0).norm().item(),
        "per_question_gradient_norm": grad.norm(dim=1).mean().item(),
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--dataset", default="easy_vqa_cluttered")
    parser.add_argument("--limit", type=int, default=400)
    args = parser.parse_args(argv)
    result = measure(args.ckpt, args.dataset, args.limit)
    print(
        f"{args.dataset} test, {result['questions']} questions (and "
        f"{result['answers_not_in_vocabulary']} whose answer the model cannot give, left out): the descent direction of the window's "
        f"translation points towards the shape for {result['share_towards_shape']:.3f} of them (0.5: "
        f"unrelated), mean cosine {result['mean_cosine']:.3f}; mean gradient {result['mean_gradient_norm']:.2e} "
        f"against {result['per_question_gradient_norm']:.2e} per question"
    )
    return result


if __name__ == "__main__":
    main()
