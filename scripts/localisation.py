"""Whether a spatial transformer or CBAM looks at the shape: the measures that
``scripts/show_stn.py`` and ``scripts/show_cbam.py`` print beside their pictures.

Boxes are ``(x0, y0, x1, y1)`` in pixels of a ``size × size`` image, ends exclusive (the
``shape_box`` column of the ``easy_vqa_cluttered`` source, or
:func:`vlkit.data.cluttered.shape_box` of a plain easy-VQA image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def box_share(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``(b,)``: each box's share of the image's area (what a uniform look gives)."""
    boxes = boxes.float()
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / size**2


def stn_share_on_box(
    theta: torch.Tensor, boxes: torch.Tensor, size: int, points: int = 32, align_corners: bool = False
) -> torch.Tensor:
    """``(b,)``: the share of a spatial transformer's sampling points (a ``points × points``
    output grid mapped through ``theta (b, 2, 3)``) that read from inside the shape's box. The
    identity transform gives about :func:`box_share`; a transform that zooms on the shape, 1."""
    grid = F.affine_grid(theta.float(), [theta.shape[0], 1, points, points], align_corners=align_corners)
    # normalised [-1, 1] coordinates to pixels (as grid_sample reads them)
    pixels = (grid + 1) / 2 * (size - 1) if align_corners else ((grid + 1) * size - 1) / 2
    x, y = pixels[..., 0], pixels[..., 1]  # (b, points, points)
    boxes = boxes.float()[:, :, None, None]
    inside = (
        (x >= boxes[:, 0] - 0.5)
        & (x < boxes[:, 2] - 0.5)
        & (y >= boxes[:, 1] - 0.5)
        & (y < boxes[:, 3] - 0.5)
    )
    return inside.float().mean((1, 2))


def cells_on_box(boxes: torch.Tensor, size: int, grid: tuple[int, int]) -> torch.Tensor:
    """``(b, h, w)`` bool: the cells of an ``h × w`` grid over the image that overlap each box."""
    h, w = grid
    boxes = boxes.float()
    top = torch.arange(h) * size / h
    left = torch.arange(w) * size / w
    rows = (top[None, :] < boxes[:, 3:4]) & (top[None, :] + size / h > boxes[:, 1:2])  # (b, h)
    cols = (left[None, :] < boxes[:, 2:3]) & (left[None, :] + size / w > boxes[:, 0:1])  # (b, w)
    return rows[:, :, None] & cols[:, None, :]


def map_share_on_box(
    attention: torch.Tensor, boxes: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(share, uniform)``, each ``(b,)``: the share of a spatial map's mass (``attention (b, 1,
    h, w)`` non-negative, e.g. CBAM's ``M_s``) on the cells that overlap the box, and those
    cells' share of the grid (a uniform map's share)."""
    cover = cells_on_box(boxes, size, tuple(attention.shape[-2:])).float()
    mass = attention[:, 0].float()
    return (mass * cover).sum((1, 2)) / mass.sum((1, 2)).clamp_min(1e-12), cover.mean((1, 2))


def test_images_and_boxes(dataset: str, size: int, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` distinct test images of a packaged easy-VQA source resized to ``size``
    (``(b, 3, size, size)`` in [0, 1]) and their shapes' boxes in those pixels (``(b, 4)``): the
    ``shape_box`` column of ``easy_vqa_cluttered``, or the box of the non-background pixels of a
    plain ``easy_vqa`` image."""
    from torchvision.transforms import v2

    from vlkit.data import load_dataset_dict, load_image
    from vlkit.data.cluttered import shape_box

    test = load_dataset_dict(dataset)["test"]
    to_tensor = v2.Compose(
        [v2.ToImage(), v2.Resize((size, size), antialias=True), v2.ToDtype(torch.float32, scale=True)]
    )
    images, boxes, seen = [], [], set()
    for row in test:
        key = row.get("image_id", len(seen))
        if key in seen:
            continue
        seen.add(key)
        image = load_image(row["image"])
        box = row["shape_box"] if "shape_box" in row else shape_box(image)
        scale = size / image.width
        boxes.append([round(v * scale) for v in box])
        images.append(to_tensor(image))
        if len(images) == limit:
            break
    return torch.stack(images), torch.tensor(boxes)
