"""Does a VQA model's image attention land on the object? Measured on easy-VQA's test split.

Usage:
    python scripts/attention_on_object.py --ckpt runs/easy_vqa_parallel [runs/easy_vqa_mcan ...]
        [--limit 2000] [--out attention_on_object.json]

easy-VQA images hold one shape on a plain background, so the shape's pixels are found from the
image: those whose colour differs from the corner pixel's (the background) by more than
``--threshold`` (sum over R, G, B of 0–255 values). A region of the model's grid (e.g. 4 × 4 for
64-pixel images at stride 16) *covers the shape* when it holds at least one shape pixel. For each
test question the script reads the attention over regions ``a_v`` (``VQAOutput.image_weights``)
and reports, averaged over the questions:

- ``attention on shape``: the share of ``a_v`` on regions that cover the shape;
- ``uniform baseline``: those regions' share of all regions (what uniform attention would give);
- ``ratio``: the two above divided (> 1: attention prefers the shape);
- ``argmax on shape``: how often the most attended region covers the shape.

``--ckpt`` takes checkpoint files or run folders (their newest ``last.ckpt``); one row each.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import Tensor

COLUMNS = ("checkpoint", "fusion", "questions", "attention on shape", "uniform baseline", "ratio", "argmax on shape")


def shape_masks(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...], threshold: float) -> Tensor:
    """``(b, S, S)`` bool: the pixels of normalised ``images`` ``(b, 3, S, S)`` whose colour differs
    from their image's top-left pixel (the plain background) by more than ``threshold`` (sum of
    the absolute differences of R, G, B in 0–255)."""
    pixels = images * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    pixels = pixels * 255.0
    background = pixels[:, :, :1, :1]
    return (pixels - background).abs().sum(1) > threshold


def region_cover(masks: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(b, h·w)`` bool, row-major like the encoder's regions: whether each cell of an ``h × w``
    grid over ``masks`` ``(b, S, S)`` holds a shape pixel (``S`` divisible by ``h`` and ``w``).

    Raises:
        ValueError: a grid that does not divide the image.
    """
    b, height, width = masks.shape
    h, w = grid
    if height % h or width % w:
        raise ValueError(f"a {h}x{w} grid does not divide {height}x{width} images")
    cells = masks.reshape(b, h, height // h, w, width // w)
    return cells.any(dim=4).any(dim=2).reshape(b, h * w)


def attention_on_object(weights: Tensor, cover: Tensor) -> dict[str, Tensor]:
    """Per question: ``share`` of the attention ``weights`` ``(b, n)`` on covering regions,
    ``baseline`` (their share of the ``n`` regions), ``argmax`` (the most attended region
    covers the shape). Questions whose image has no shape pixel are left out."""
    keep = cover.any(dim=1)
    weights, cover = weights[keep], cover[keep].to(weights.dtype)
    return {
        "share": (weights * cover).sum(1),
        "baseline": cover.mean(1),
        "argmax": cover.gather(1, weights.argmax(1, keepdim=True)).squeeze(1),
    }


def measure(ckpt: str, limit: int | None, threshold: float, batch_size: int) -> dict:
    from vlkit.cli.runs import resolve_checkpoint
    from vlkit.data import VQADataModule
    from vlkit.tasks import load_task

    path = resolve_checkpoint(ckpt)
    task = load_task(path)
    pre = task.preprocessing
    data = VQADataModule(
        dataset="easy_vqa",
        image_column="image",
        question_column="question",
        answer_column="answer",
        image_size=pre.image_size,
        batch_size=batch_size,
    )
    data.setup("test")
    if list(data.vocabulary) != list(task.hparams["vocabulary"]):
        raise SystemExit(f"{ckpt}: the checkpoint's vocabulary is not easy-VQA's (trained on other data?)")
    parts: dict[str, list[Tensor]] = {"share": [], "baseline": [], "argmax": []}
    with torch.no_grad():
        for batch in data.test_dataloader():
            output = task.model(batch.image, batch.question_ids, batch.question_mask)
            if output.image_weights is None:
                raise SystemExit(f"{ckpt}: this model's fusion has no attention over image regions")
            masks = shape_masks(batch.image, pre.mean, pre.std, threshold)
            result = attention_on_object(output.image_weights, region_cover(masks, output.grid_size))
            for key, values in result.items():
                parts[key].append(values)
            if limit is not None and sum(len(v) for v in parts["share"]) >= limit:
                break  # the vocabulary stays the whole training split's: only the test split is cut
    values = {key: torch.cat(items) for key, items in parts.items()}
    share, baseline = values["share"].mean().item(), values["baseline"].mean().item()
    return {
        "checkpoint": str(path),
        "fusion": task.hparams["fusion"]["name"] if isinstance(task.hparams.get("fusion"), dict) else str(task.hparams.get("fusion")),
        "questions": len(values["share"]),
        "attention on shape": round(share, 4),
        "uniform baseline": round(baseline, 4),
        "ratio": round(share / baseline, 2),
        "argmax on shape": round(values["argmax"].mean().item(), 4),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="+", required=True, help="checkpoints or run folders")
    parser.add_argument("--limit", type=int, default=None, help="stop after about this many test questions")
    parser.add_argument("--threshold", type=float, default=60.0, help="colour difference of a shape pixel")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = [measure(ckpt, args.limit, args.threshold, args.batch_size) for ckpt in args.ckpt]
    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS))
    for row in rows:
        print("| " + " | ".join(str(row[column]) for column in COLUMNS) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return rows


if __name__ == "__main__":
    main()
