"""Which part of a trained CBAM block gives its accuracy: the per-image spatial map, its average, or the channel map.

Usage:
    python scripts/cbam_parts.py --ckpt runs/<run>/version_N/checkpoints/best-epoch=N.ckpt
        [--dataset easy_vqa_cluttered] [--limit 2000]

The checkpoint is a ``VQATask`` with one CBAM block in its image encoder (``cbam: output`` or
``cbam: regions``). Over the first ``--limit`` test questions of ``--dataset`` the script prints
the VQA accuracy (one answer per question: exact match) of the model as trained and with one part
of the block replaced, everything else as trained:

- ``spatial map averaged``: ``M_s`` replaced, for every image, by its mean over the images read
  (cell by cell): what a positional prior gives, without the per-image part of the map;
- ``no spatial map``: ``M_s = 1`` (the channel map alone);
- ``no channel map``: ``M_c = 1`` (the spatial map alone, computed from the unrefined map);
- ``block off``: the gate at 0, the block's input passed on as it is.

Also printed: how much ``M_s`` varies between images against how much it varies between cells
(the standard deviation over images, averaged over cells, and the standard deviation over cells of
the average map).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/cbam_probe.py

from cbam_probe import cbam_block

PARTS = ("as trained", "spatial map averaged", "no spatial map", "no channel map", "block off")


@contextlib.contextmanager
def replaced(block: torch.nn.Module, part: str, mean_map: torch.Tensor | None = None) -> Iterator[None]:
    """Run the body with ``part`` of ``block`` replaced (one of :data:`PARTS`); ``mean_map``
    ``(1, 1, h, w)`` is the spatial map that ``"spatial map averaged"`` applies."""
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; valid: {list(PARTS)}")
    hooks = []
    if part == "spatial map averaged":
        if mean_map is None:
            raise ValueError("'spatial map averaged' needs the mean map")
        hooks.append(block.spatial.register_forward_hook(lambda m, inputs, out: inputs[0] * mean_map))
    elif part == "no spatial map":
        hooks.append(block.spatial.register_forward_hook(lambda m, inputs, out: inputs[0]))
    elif part == "no channel map":
        hooks.append(block.channel.register_forward_hook(lambda m, inputs, out: inputs[0]))
    elif part == "block off":
        hooks.append(block.register_forward_hook(lambda m, inputs, out: inputs[0]))
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def spatial_maps(block: torch.nn.Module, run) -> torch.Tensor:
    """``(N, 1, h, w)``: the block's spatial map ``M_s`` on every image ``run()`` passes through it."""
    maps: list[torch.Tensor] = []
    hook = block.spatial.register_forward_hook(lambda m, inputs, out: maps.append(m.attention_map(inputs[0])))
    try:
        run()
    finally:
        hook.remove()
    return torch.cat(maps)


def main(argv: list[str] | None = None) -> dict[str, float]:
    from vlkit.cli.runs import resolve_checkpoint
    from vlkit.data import load_dataset_dict, load_image
    from vlkit.tasks import load_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint or run folder")
    parser.add_argument(
        "--dataset", default="easy_vqa_cluttered", help="packaged source of the test questions"
    )
    parser.add_argument("--limit", type=int, default=2000, help="test questions read")
    parser.add_argument("--batch_size", type=int, default=200)
    args = parser.parse_args(argv)
    if args.limit < 1 or args.batch_size < 1:
        parser.error("--limit and --batch_size must be at least 1")
    task = load_task(resolve_checkpoint(args.ckpt)).eval()
    encoder = task.model.image_encoder
    block = cbam_block(encoder)
    transform = task.preprocessing.image_transform()
    test = load_dataset_dict(args.dataset)["test"]
    rows = test.select(range(min(args.limit, len(test))))
    batches = []
    with torch.no_grad():
        for start in range(0, len(rows), args.batch_size):
            batch = rows.select(range(start, min(start + args.batch_size, len(rows))))
            images = torch.stack([transform(load_image(cell)) for cell in batch["image"]])
            if encoder.cacheable:  # the frozen backbone once, not once per part
                images = encoder.backbone_features(images)
            ids, mask = task.encode_questions(batch["question"])
            batches.append((images, ids, mask, batch["answer"]))
        answers = task.hparams["answers"]

        def accuracy() -> float:
            hits = 0
            for images, ids, mask, reference in batches:
                predicted = task(images, ids, mask).logits.argmax(1).tolist()
                hits += sum(answers[k] == a for k, a in zip(predicted, reference, strict=True))
            return hits / len(rows)

        maps = spatial_maps(block, accuracy)
        mean_map = maps.mean(0, keepdim=True)
        results = {}
        for part in PARTS:
            with replaced(block, part, mean_map):
                results[part] = accuracy()
    between_images = maps.std(0).mean().item()
    between_cells = mean_map.std().item()
    print(f"{args.ckpt}: {len(rows)} test questions of {args.dataset}")
    print("| part replaced | VQA accuracy |\n|---|---|")
    for part, value in results.items():
        print(f"| {part} | {value:.4f} |")
    print(
        f"spatial map: sd over images {between_images:.4f} (mean over cells), sd over the cells of the "
        f"average map {between_cells:.4f}"
    )
    return {**results, "sd between images": between_images, "sd between cells": between_cells}


if __name__ == "__main__":
    main()
