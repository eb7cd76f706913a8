"""Can CBAM's spatial branch tell the shape's cells from the rest? Linear probes on what it reads.

Usage:
    python scripts/cbam_probe.py --ckpt runs/<run>/version_N/checkpoints/best-epoch=N.ckpt
        [--dataset easy_vqa_cluttered] [--fit 300] [--held_out 300]

The checkpoint is a ``VQATask`` whose image encoder has a CBAM block on the map it reads
(``cbam: output``) or on its region features (``cbam: regions``: "every channel" below is then
every feature of the normalised region). Over the first ``--fit`` distinct test images of ``--dataset`` the script fits
two logistic regressions that predict, per cell of that map, whether the cell overlaps the
shape's box, and reports their ROC AUC on the next ``--held_out`` images (0.5: no better than
chance, 1: every shape cell ranked above every other cell), beside the AUC of the spatial weight
the trained block applies on those images (:func:`spatial_weight`: the block's multiplier of each
feature, averaged over the channels; behind a gate ``g`` below 0, a map that is low on the shape
gives a weight that is high there), and that weight's share of its mass on the shape's cells:

- **what CBAM's spatial branch reads**: the channel mean and max of the block's channel-refined
  map over the 7 × 7 neighbourhood of the cell (98 inputs, zero padding): a linear function of
  these followed by a sigmoid is exactly the family of maps ``M_s = σ(conv7×7([mean_c; max_c]))``
  can be, so its AUC estimates how well a spatial branch reading these inputs could mark the shape
  (for this block's trained channel attention);
- **every channel of the backbone's map at the cell** (a 1 × 1 probe): what a localisation
  network reading the features themselves, as a spatial transformer's does, starts from.

Last, how much of a spatial weight survives the encoder (:func:`scale_survival`): the relative
change of a cell's region feature when its features are scaled by 0.5 and by 0.1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import binary_auroc
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))  # scripts/localisation.py

from vlkit.data import IMAGENET_MEAN, IMAGENET_STD


def spatial_weight(block: torch.nn.Module, feature_map: torch.Tensor) -> torch.Tensor:
    """``(b, h, w)``: what a CBAM block multiplies each cell's features by, averaged over the
    channels, for a ``(b, C, h, w)`` map: ``mean_c(M_c)·M_s`` for the plain block and
    ``1 − g + g·mean_c(M_c)·M_s`` behind a gate ``g`` (its output is ``F + g·(M_c·M_s·F − F)``)."""
    channel = block.channel.attention_map(feature_map)  # (b, C, 1, 1)
    weight = channel.mean(1) * block.spatial.attention_map(channel * feature_map)[:, 0]  # (b, h, w)
    if block.gate is not None:
        gate = block.gate_value()
        weight = 1 - gate + gate * weight
    return weight


def cbam_block(encoder: torch.nn.Module) -> torch.nn.Module:
    """The encoder's one CBAM block after the backbone (``output_cbam`` or ``region_cbam``).

    Raises:
        ValueError: the encoder has neither.
    """
    block = getattr(encoder, "output_cbam", None) or getattr(encoder, "region_cbam", None)
    if block is None:
        raise ValueError(
            "the image encoder has no CBAM block on its read map or its regions (train with cbam: output "
            "or cbam: regions)"
        )
    return block


def probe_inputs(
    encoder: torch.nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pooled, channels, trained)`` per cell of the map the encoder's output CBAM reads:
    ``(b, h, w, 98)`` the 7 × 7 neighbourhood of ``[mean_c; max_c]`` of the channel-refined map,
    ``(b, h, w, C)`` the backbone's map itself, and ``(b, h, w)`` the block's
    :func:`spatial_weight`.

    Raises:
        ValueError: no CBAM block on the read map, or a spatial transformer before it.
    """
    block = cbam_block(encoder)
    if getattr(encoder, "output_stn", None) is not None:
        raise ValueError(
            "the image encoder has a spatial transformer before its CBAM block (stn: output): the "
            "block's map no longer lines up with the image's cells; probe a run without it"
        )
    seen: dict[str, torch.Tensor] = {}
    hooks = [  # the block's input map, and the channel-refined map its spatial branch reads
        module.register_forward_hook(lambda m, inputs, out, key=key: seen.setdefault(key, inputs[0]))
        for module, key in ((block, "map"), (block.spatial, "refined"))
    ]
    try:
        with torch.no_grad():
            encoder(v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)(images))
            feature_map = seen["map"]  # (b, C, h, w)
            pooled = block.spatial.descriptors(seen["refined"])  # (b, 2, h, w)
            trained = spatial_weight(block, feature_map)
    finally:
        for hook in hooks:
            hook.remove()
    b, _, h, w = pooled.shape
    size = block.spatial.conv.kernel_size[0]
    patches = F.unfold(pooled, size, padding=size // 2)  # (b, 2 * size * size, h * w)
    return patches.transpose(1, 2).reshape(b, h, w, -1), feature_map.permute(0, 2, 3, 1), trained


def scale_survival(
    encoder: torch.nn.Module, cells: torch.Tensor, scales: tuple[float, ...]
) -> dict[float, float]:
    """How much of a spatial weight reaches the fusion: for each ``s`` in ``scales``, the mean over
    the cells ``(..., C)`` of ``|r(s·f) − r(f)| / |r(f)|``, where ``r`` is the encoder's region
    feature (projection, then LayerNorm when the encoder normalises) of a cell's features ``f``.

    A spatial attention map multiplies every feature of a cell by one number ``s``. A LayerNorm
    over each region's projection ``W·f + b`` undoes such a factor wherever ``|W·f|`` dwarfs ``|b|``:
    the change is then near 0, where without it it is ``(1 − s)·|W·f| / |W·f + b|``."""
    with torch.no_grad():
        region = encoder.norm(encoder.proj(cells))
        return {
            s: ((encoder.norm(encoder.proj(s * cells)) - region).norm(dim=-1) / region.norm(dim=-1))
            .mean()
            .item()
            for s in scales
        }


def fit_logistic(x: torch.Tensor, y: torch.Tensor, steps: int = 200, l2: float = 1e-3) -> torch.nn.Linear:
    """A logistic regression ``x (n, d) -> y (n,)`` in {0, 1}, inputs standardised, fitted with L-BFGS."""
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    linear = torch.nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=steps, line_search_fn="strong_wolfe")
    z = (x - mean) / std

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(linear(z)[:, 0], y) + l2 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():  # fold the standardisation into the layer
        linear.weight /= std
        linear.bias -= (linear.weight * mean).sum()
    return linear


def main(argv: list[str] | None = None) -> dict[str, float]:
    from localisation import cells_on_box, test_images_and_boxes

    from vlkit.tasks import VQATask

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--dataset", default="easy_vqa_cluttered", help="packaged source of the test images")
    parser.add_argument("--fit", type=int, default=300, help="images the probes are fitted on")
    parser.add_argument("--held_out", type=int, default=300, help="images the probes are scored on")
    args = parser.parse_args(argv)
    if args.fit < 1 or args.held_out < 1:
        parser.error("--fit and --held_out must be at least 1")
    task = VQATask.load_from_checkpoint(args.ckpt, map_location="cpu", weights_only=True).eval()
    size = task.preprocessing.image_size
    images, boxes = test_images_and_boxes(args.dataset, size, args.fit + args.held_out)
    if len(images) < args.fit + args.held_out:
        parser.error(f"{args.dataset} has {len(images)} distinct test images; ask for fewer")
    pooled, channels, trained = probe_inputs(task.model.image_encoder, images)
    target = cells_on_box(boxes, size, tuple(pooled.shape[1:3])).float()
    held_target = target[args.fit :].flatten().long()
    results = {"trained": binary_auroc(trained[args.fit :].flatten(), held_target).item()}
    share = (trained * target).sum((1, 2)) / trained.sum((1, 2))
    print(
        f"the trained block's spatial weight: ROC AUC {results['trained']:.3f} on the held-out images, "
        f"{share.mean().item():.3f} of its mass on the shape's cells"
    )
    for name, x in (("spatial branch (7x7 [mean_c; max_c])", pooled), ("every channel (1x1)", channels)):
        fit, held = x[: args.fit].flatten(0, 2), x[args.fit :].flatten(0, 2)
        probe = fit_logistic(fit, target[: args.fit].flatten())
        with torch.no_grad():
            auc = binary_auroc(probe(held)[:, 0], held_target).item()
        results[name] = auc
        print(f"{name}: held-out ROC AUC {auc:.3f} ({x.shape[-1]} inputs per cell)")
    print(f"shape cells: {target.mean().item():.3f} of all cells; {args.fit} + {args.held_out} images")
    if task.model.image_encoder.output_cbam is None:  # cbam: regions acts after the LayerNorm
        return results
    survival = scale_survival(task.model.image_encoder, channels, (0.5, 0.1))
    results.update({f"scale {s}": change for s, change in survival.items()})
    print(
        "a cell's features scaled by "
        + ", ".join(f"{s} move its region feature by {change:.4f}" for s, change in survival.items())
        + " of its length (after the encoder's projection"
        + (" and LayerNorm)" if isinstance(task.model.image_encoder.norm, torch.nn.LayerNorm) else ")")
    )
    return results


if __name__ == "__main__":
    main()
