"""Draw the CBAM spatial attention maps of a trained model over its input images.

Usage:
    python scripts/show_cbam.py --ckpt runs/<recipe>/version_N/checkpoints/last.ckpt --out cbam.png
        [--images a.png b.png ...]

The checkpoint is a ``VQATask`` whose image encoder has CBAM blocks (``cbam: stages``, ``blocks`` or
``output``). Images default to the first four test images of ``--dataset``. The script also measures
whether the last block's spatial map weighs the shape, over the first ``--limit`` test images of
``--dataset`` (default 500 of ``easy_vqa``; ``easy_vqa_cluttered`` for the cluttered benchmark): the
share of the map's mass on the cells that overlap the shape's box, against those cells' share of the
map (a uniform map's) — both printed, mean over the images. The PNG has one row per image: the
image, then the spatial map ``M_s`` of every CBAM block (from the first to the last), upsampled to
the image size and shown as a heat map (white = 1, black = 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/localisation.py

from vlkit.data import IMAGENET_MEAN, IMAGENET_STD
from vlkit.vision import CBAM


def spatial_maps(encoder: torch.nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Run ``encoder`` on normalised ``images`` and return every CBAM block's ``(b, 1, h, w)`` map."""
    maps: list[torch.Tensor] = []
    blocks = [m for m in encoder.modules() if isinstance(m, CBAM)]
    if not blocks:
        raise ValueError(
            "the image encoder has no CBAM blocks (train a recipe with image_encoder cbam: stages)"
        )
    hooks = [
        b.spatial.register_forward_hook(lambda m, inputs, out: maps.append(m.attention_map(inputs[0])))
        for b in blocks
    ]
    try:
        with torch.no_grad():
            encoder(images)
    finally:
        for hook in hooks:
            hook.remove()
    return maps


def render(images: torch.Tensor, maps: list[torch.Tensor]) -> Image.Image:
    """Rows: image (b, 3, S, S) in [0, 1], then each map upsampled to S × S."""
    b, _, size, _ = images.shape
    to_pil = v2.ToPILImage()
    sheet = Image.new("RGB", ((1 + len(maps)) * (size + 4), b * (size + 4)), "white")
    for i in range(b):
        sheet.paste(to_pil(images[i].clamp(0, 1)).convert("RGB"), (2, i * (size + 4) + 2))
        for j, m in enumerate(maps):
            heat = F.interpolate(m[i : i + 1], size=(size, size), mode="nearest")[0]
            sheet.paste(
                to_pil(heat.clamp(0, 1)).convert("RGB"), ((j + 1) * (size + 4) + 2, i * (size + 4) + 2)
            )
    return sheet


def main(argv: list[str] | None = None) -> Path:
    from vlkit.tasks import VQATask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--out", default="cbam.png")
    parser.add_argument("--images", nargs="+", default=None)
    parser.add_argument("--size", type=int, default=None, help="image size (default: the recipe's)")
    parser.add_argument("--dataset", default="easy_vqa", help="packaged source of the measured test images")
    parser.add_argument("--limit", type=int, default=500, help="test images measured")
    args = parser.parse_args(argv)
    task = VQATask.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True).eval()
    from localisation import map_share_on_box, test_images_and_boxes

    size = args.size or task.preprocessing.image_size
    if args.images is None:  # the first four test images of the measured source
        images = test_images_and_boxes(args.dataset, size, 4)[0]
    else:
        to_tensor = v2.Compose(
            [v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)]
        )
        images = torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in args.images])
    normalised = v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(images)
    maps = spatial_maps(task.model.image_encoder, normalised)
    out = Path(args.out)
    render(images, maps).save(out)
    print(f"wrote {out}: {len(images)} images × {len(maps)} CBAM maps")

    measured, boxes = test_images_and_boxes(args.dataset, size, args.limit)
    last = spatial_maps(task.model.image_encoder, v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(measured))[-1]
    share, uniform = map_share_on_box(last, boxes, size)
    print(
        f"{args.dataset} test, {len(measured)} images: the last CBAM spatial map puts {share.mean().item():.3f} of its "
        f"mass on the shape's cells, which are {uniform.mean().item():.3f} of the map (a uniform map's share)"
    )
    return out


if __name__ == "__main__":
    main()
