"""Forward time of a frozen backbone in each memory format and precision of ``ImageEncoder``.

Usage:
    python scripts/backbone_formats.py [--backbone efficientnet_lite0] [--feature-index 3]
        [--size 64] [--batch 64] [--repeats 20] [--threads 2]

Times ``ImageEncoder.backbone_features`` (the frozen backbone, no gradients: what a training
step without a feature cache runs) on random images, for ``memory_format`` contiguous (NCHW) and
channels_last, and ``backbone_precision`` 32 and bf16 (channels_last); interleaved, median of
``--repeats`` after 3 warm-up runs; prints the largest difference of each variant's features
from the contiguous float32 ones. The defaults are the base recipe's encoder and batch.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from vlkit.vision import ImageEncoder

VARIANTS = {
    "contiguous, float32": {"memory_format": "contiguous"},
    "channels_last, float32": {"memory_format": "channels_last"},
    "channels_last, bf16": {"memory_format": "channels_last", "backbone_precision": "bf16"},
}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--feature-index", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    opts = parser.parse_args(argv)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(0)
    encoders = {}
    for name, args in VARIANTS.items():
        encoders[name] = ImageEncoder(
            opts.backbone, 32, feature_index=opts.feature_index, freeze=True, **args
        ).eval()
        encoders[name].load_state_dict(next(iter(encoders.values())).state_dict())
    images = torch.randn(opts.batch, 3, opts.size, opts.size)
    reference = encoders["contiguous, float32"].backbone_features(images).feature_map
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for round_ in range(opts.repeats + 3):
        for name, encoder in encoders.items():
            start = time.perf_counter()
            encoder.backbone_features(images)
            if round_ >= 3:
                times[name].append((time.perf_counter() - start) * 1e3)
    result = {}
    print(
        f"{opts.backbone}, {opts.batch} × {opts.size} px, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| variant | forward ms (median) | vs contiguous | max abs difference |\n|---|---|---|---|")
    base = statistics.median(times["contiguous, float32"])
    for name, values in times.items():
        ms = statistics.median(values)
        diff = (encoders[name].backbone_features(images).feature_map - reference).abs().max().item()
        result[name] = ms
        print(f"| {name} | {ms:.1f} | {ms / base:.2f} | {diff:.1e} |")
    return result


if __name__ == "__main__":
    main()
