"""How big a feature cache gets, and how fast a loader feeds 448-pixel images.

Usage:
    python scripts/cache_scale.py [--loader] [--workers 8] [--images 256] [--batch 64]

**Cache size, on paper** (no data needed): for each Hub recipe (``recipes/hub/*.yaml``: its
backbone, feature stage and image size), the backbone's feature map for one image is found by
running it once on a blank image (random weights: only the shape matters); its bytes per image
in float32 and float16 (``data.feature_cache_dtype``), times two when training flips are
cached, and the total for the dataset's distinct images (:data:`DATASET_IMAGES`: VQAv2 uses the
123,287 COCO train2014 + val2014 images, Flickr30k 31,783, the Hateful Memes 10,000).

**Loader** (``--loader``): images/s of vlkit's training loader (decode a JPEG, resize to the
recipe's 448 pixels, normalise, collate) over a synthetic set of ``--images`` random 640×480
JPEGs (COCO's typical size) with ``--workers`` worker processes, the median of 3 passes after
a warm-up pass. What a GPU that computes the backbone every step would have to be fed, beside
the cache, which needs no decoding at all.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
#: Distinct images of each Hub recipe's dataset (train + validation + test where the recipe uses them).
DATASET_IMAGES = {"vqav2": 123_287, "flickr30k_karpathy": 31_783, "hateful_memes": 10_000}


def feature_shape(encoder_args: dict, image_size: int) -> tuple[int, ...]:
    """The backbone feature map ``(C, h, w)`` of one ``image_size`` image."""
    from vlkit.vision import ImageEncoder

    args = {k: v for k, v in encoder_args.items() if k not in ("pretrained", "packaged_weights", "dim")}
    encoder = ImageEncoder(**args, dim=8).eval()
    with torch.no_grad():
        return tuple(
            encoder.backbone_features(torch.zeros(1, 3, image_size, image_size)).feature_map.shape[1:]
        )


def cache_sizes() -> list[dict]:
    rows = []
    for name, images in DATASET_IMAGES.items():
        recipe = yaml.safe_load((ROOT / "vlkit" / "recipes" / "hub" / f"{name}.yaml").read_text())
        data = recipe["data"]["init_args"]
        shape = feature_shape(recipe["model"]["init_args"]["image_encoder"], data["image_size"])
        copies = 2 if data.get("augment") else 1
        per_image = int(np.prod(shape)) * copies
        rows.append(
            {
                "recipe": f"recipes/hub/{name}.yaml",
                "feature map": "×".join(map(str, shape)),
                "images": images,
                "MB / image float32": per_image * 4 / 1e6,
                "GB float32": per_image * 4 * images / 1e9,
                "GB float16": per_image * 2 * images / 1e9,
            }
        )
    return rows


def loader_rate(workers: int, images: int, batch: int, size: int = 448) -> float:
    """Images/s of the training loader over ``images`` synthetic 640×480 JPEGs at ``size`` pixels."""
    import datasets
    from PIL import Image

    from vlkit.data import VQADataModule

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for i in range(images):
            path = Path(folder) / f"{i}.jpg"
            noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
            Image.fromarray(noise).save(path, quality=90)
            paths.append(str(path))
        rows = {"image": paths, "question": ["what is it?"] * images, "answer": ["thing"] * images}
        split = datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image(decode=False))
        data = VQADataModule(
            datasets.DatasetDict({"train": split, "validation": split}),
            image_size=size,
            batch_size=batch,
            num_workers=workers,
        )
        data.setup("fit")
        passes = []
        for _ in range(4):  # the first pass warms up (worker start, page cache)
            start = time.perf_counter()
            seen = sum(b.image.shape[0] for b in data.train_dataloader())
            passes.append(seen / (time.perf_counter() - start))
        return statistics.median(passes[1:])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loader", action="store_true", help="also measure the loader's images/s")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    opts = parser.parse_args(argv)
    rows = cache_sizes()
    print(
        "| recipe | feature map | distinct images | MB / image (float32) | cache GB float32 | cache GB float16 |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| `{r['recipe']}` | {r['feature map']} | {r['images']:,} | {r['MB / image float32']:.2f} | "
            f"{r['GB float32']:.0f} | {r['GB float16']:.0f} |"
        )
    result = {"cache": rows}
    if opts.loader:
        rate = loader_rate(opts.workers, opts.images, opts.batch)
        result["loader_images_per_s"] = rate
        print(
            f"\nloader, 448 px from 640×480 JPEGs, {opts.workers} workers, batch {opts.batch}: {rate:.0f} images/s"
        )
    return result


if __name__ == "__main__":
    main()
