"""Draw what a spatial transformer does: input images with the STN's sampling grid, and its outputs.

Usage:
    python scripts/show_stn.py --out stn.png [--ckpt runs/<recipe>/version_N/checkpoints/last.ckpt]
        [--images a.png b.png ...] [--size 128] [--dataset easy_vqa_cluttered] [--limit 500]

With ``--ckpt`` the script also measures whether the STN zooms on the shape, over the first
``--limit`` test images of ``--dataset`` (at the checkpoint's image size): the share of its sampling
points that read from inside the shape's box, against the box's share of the image (what the
identity transform gives) — both printed, mean over the images.

With ``--ckpt`` (a ``VQATask`` checkpoint whose image encoder has a spatial transformer: ``stn:
input``, ``output`` or a stage), the trained STN is shown; θ of an STN on a feature map is drawn on
the image, which the map covers. Without one, a demonstration θ (rotate 20°, zoom ×1.4 on the upper
left) is used. Images default to the first four test images of ``--dataset``. The PNG has one column
per image: the input with the sampling grid (where each output pixel reads from) on top, the output
below.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/localisation.py

from vlkit.data import IMAGENET_MEAN, IMAGENET_STD
from vlkit.vision import SpatialTransformer

DEMO_THETA = torch.tensor(
    [[math.cos(0.35), -math.sin(0.35), -0.2], [math.sin(0.35), math.cos(0.35), -0.2]]
) * (torch.tensor([[1 / 1.4], [1 / 1.4]]))


def sampling_grid(theta: torch.Tensor, size: int, lines: int = 9) -> torch.Tensor:
    """Source points ``(b, lines, lines, 2)`` in pixels of a ``size × size`` input for a coarse output grid."""
    grid = F.affine_grid(theta, [theta.shape[0], 1, lines, lines], align_corners=True)  # in [-1, 1]
    return (grid + 1) / 2 * (size - 1)


def render(images: torch.Tensor, outputs: torch.Tensor, theta: torch.Tensor) -> Image.Image:
    """One PNG: inputs (b, 3, S, S) in [0, 1] with the sampling grid drawn, outputs below."""
    b, _, size, _ = images.shape
    to_pil = v2.ToPILImage()
    sheet = Image.new("RGB", (b * (size + 8), 2 * (size + 8)), "white")
    points = sampling_grid(theta, size)
    for i in range(b):
        framed = to_pil(images[i].clamp(0, 1)).convert("RGB")
        draw = ImageDraw.Draw(framed)
        for row in points[i].tolist():  # horizontal lines of the output grid
            draw.line([tuple(p) for p in row], fill=(255, 0, 0), width=1)
        for col in points[i].transpose(0, 1).tolist():
            draw.line([tuple(p) for p in col], fill=(255, 0, 0), width=1)
        sheet.paste(framed, (i * (size + 8) + 4, 4))
        sheet.paste(to_pil(outputs[i].clamp(0, 1)).convert("RGB"), (i * (size + 8) + 4, size + 12))
    return sheet


def load_images(paths: list[str], size: int) -> torch.Tensor:
    to_tensor = v2.Compose(
        [v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)]
    )
    return torch.stack([to_tensor(Image.open(p).convert("RGB")) for p in paths])


def trained_stn(ckpt: str) -> tuple[torch.nn.Module, SpatialTransformer, int]:
    """The checkpoint's image encoder, its spatial transformer (``stn: input``, ``output`` or a
    stage) and the image size it was trained at."""
    from vlkit.tasks import VQATask

    task = VQATask.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    encoder = task.model.image_encoder.eval()
    stns = [m for m in encoder.modules() if isinstance(m, SpatialTransformer)]
    if not stns:
        raise ValueError(
            f"{ckpt}: the image encoder has no spatial transformer (train a recipe with image_encoder "
            "stn: input or stn: output)"
        )
    return encoder, stns[0], task.preprocessing.image_size


def encoder_theta(encoder: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(b, 2, 3)``: the θ the encoder's STN computes for raw ``images (b, 3, H, W)`` in [0, 1].

    The STN sees normalised images (or the backbone's map of them), as in training; θ acts on
    normalised coordinates, which cover the whole image whether it transforms the image or a
    feature map of it, so it is drawn and measured on the image."""
    with torch.no_grad():
        return encoder(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(images)).theta


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="stn.png")
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--images", nargs="+", default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--dataset", default="easy_vqa", help="packaged source of the measured test images")
    parser.add_argument("--limit", type=int, default=500, help="test images measured (with --ckpt)")
    args = parser.parse_args(argv)
    if args.images is None:  # the first four test images of the measured source
        from localisation import test_images_and_boxes

        images = test_images_and_boxes(args.dataset, args.size, 4)[0]
    else:
        images = load_images(args.images, args.size)
    if args.ckpt:
        encoder, stn, trained_size = trained_stn(args.ckpt)
        theta = encoder_theta(encoder, images)
    else:
        stn = SpatialTransformer(3)
        theta = DEMO_THETA.expand(len(images), 2, 3)
    with torch.no_grad():
        outputs = stn.transform_with(images, theta)
    out = Path(args.out)
    render(images, outputs, theta).save(out)
    print(f"wrote {out} ({len(images)} images, θ of the first: {theta[0].tolist()})")
    if args.ckpt:
        share, baseline = measure_zoom(encoder, stn, trained_size, args.dataset, args.limit)
        print(
            f"{args.dataset} test, {args.limit} images: {share:.3f} of the STN's sampling points read from the "
            f"shape's box, which is {baseline:.3f} of the image (the identity's share)"
        )
    return out


def measure_zoom(
    encoder: torch.nn.Module, stn: SpatialTransformer, size: int, dataset: str, limit: int
) -> tuple[float, float]:
    """Mean share of the STN's sampling points inside the shape's box (test images of
    ``dataset`` at ``size`` pixels), and the box's mean share."""
    from localisation import box_share, stn_share_on_box, test_images_and_boxes

    images, boxes = test_images_and_boxes(dataset, size, limit)
    theta = encoder_theta(encoder, images)
    share = stn_share_on_box(theta, boxes, size, align_corners=stn.align_corners)
    return share.mean().item(), box_share(boxes, size).mean().item()


if __name__ == "__main__":
    main()
