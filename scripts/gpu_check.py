"""The GPU check in one command: layers, the base recipe and the Hub VQA step on one GPU (≤ 8 min on an H100).

Usage:
    python scripts/gpu_check.py [--out docs/performance_gpu.md] [--json gpu_check.json]
    python scripts/gpu_check.py --dry-run --out /tmp/gpu.md     # CPU, tiny sizes: what the tests run

It measures, and writes as one Markdown page:

1. **Layers in bf16**: ``scripts/benchmark.py --device cuda --dtype bfloat16`` (vlkit's attention,
   fusion and vision layers against torch / timm / the plain references; forward and
   forward+backward time, peak memory), once eager and once under ``--compile``.
2. **One epoch of the base recipe in bf16**: ``vlkit fit --config recipes/vqa/easy_vqa_parallel.yaml
   --trainer.max_epochs 1 --trainer.precision bf16-mixed`` on the GPU: wall time, seconds per
   training epoch, validation accuracy after it (the recipe's float32 run reaches 0.94 after
   epoch 0 on the CPU: bf16 must not fall far below).
3. **The Hub VQA recipe's training step at 448 px** (``recipes/hub/vqav2.yaml``: ResNet-50 14×14
   regions, MCAN-small, batch 64, bf16-mixed) on a *synthetic schema twin* (random 448-pixel images
   with VQAv2's columns: ``image``, ``question``, ``answers`` of ten strings; the machine has no
   network, so ``pretrained: false``): images per second over the timed steps, peak GPU memory,
   and the achieved TFLOP/s (matmul and convolution FLOPs of one step counted with
   ``torch.utils.flop_counter.FlopCounterMode``, divided by the median step time) as a share of
   the card's dense bf16 peak (989 TFLOP/s for an H100 or H200 SXM; unknown cards: no share).

``--dry-run`` does the same on the CPU at tiny sizes (float32, a few steps, 32-pixel images), so
the test suite checks that every part runs and that the page is written; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning import Callback

ROOT = Path(__file__).resolve().parents[1]
#: Dense bf16 peak of known cards, in TFLOP/s (NVIDIA's data sheets, SXM parts, without sparsity).
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}


class StepProbe(Callback):
    """Times training steps (after ``warmup`` of them) and counts the FLOPs of one step; writes a
    JSON file named by the ``GPU_CHECK_PROBE`` environment variable when training ends."""

    def __init__(self, warmup: int = 3) -> None:
        self.warmup, self.times, self.flops, self.images = warmup, [], None, 0
        self._start, self._counter = 0.0, None

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        from torch.utils.flop_counter import FlopCounterMode

        self._sync()
        if trainer.global_step == self.warmup - 1 and self.flops is None:  # count one warmed-up step
            self._counter = FlopCounterMode(display=False)
            self._counter.__enter__()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        elapsed = time.perf_counter() - self._start
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops, self._counter = self._counter.get_total_flops(), None
        elif trainer.global_step > self.warmup:  # global_step counts this step already
            self.times.append(elapsed)
            self.images += int(batch.image.shape[0])

    def on_train_end(self, trainer, pl_module) -> None:
        path = os.environ.get("GPU_CHECK_PROBE")
        if path:
            result = {
                "steps": len(self.times),
                "median_step_s": statistics.median(self.times) if self.times else None,
                "images_per_s": self.images / sum(self.times) if self.times else None,
                "flops_per_step": self.flops,
                "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
            }
            Path(path).write_text(json.dumps(result))


def _run(command: list[str], env: dict[str, str] | None = None, timeout: int = 900) -> tuple[float, str]:
    """Run ``command`` in the repository; its wall seconds and output (raises on failure)."""
    start = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,  # a failure raises below, with the command's output
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} ... failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - start, done.stdout + done.stderr


def layers(work: Path, dry_run: bool) -> dict[str, str]:
    """The benchmark's Markdown tables, eager and compiled."""
    device = ["--device", "cpu", "--dtype", "float32", "--quick"] if dry_run else ["--device", "cuda", "--dtype", "bfloat16"]
    tables = {}
    for name, extra in (("eager", []), ("torch.compile", ["--compile"])):
        markdown = work / f"layers_{name}.md"
        command = [sys.executable, "scripts/benchmark.py", *device, "--max-seconds", "2", "--markdown", str(markdown)]
        _run([*command, *extra, *(["--only", "cbam", "parallel_coattention"] if dry_run else [])])
        tables[name] = markdown.read_text()
    return tables


def _tiny_vqa(folder: Path, size: int, n_images: int, ten_answers: bool) -> Path:
    """A random-image DatasetDict with VQAv2's columns (``image``, ``question``, ``answers``)."""
    import datasets
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    words = ["red", "blue", "circle", "square", "yes", "no"]
    splits = {}
    for index, name in enumerate(("train", "validation", "test")):
        rows: dict[str, list] = {"image": [], "question": [], "answers": []}
        for i in range(n_images):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            rows["image"].append(Image.fromarray(pixels))
            rows["question"].append(f"what is in image {i} of {name}?")
            answer = words[(i + index) % len(words)]
            rows["answers"].append([answer] * 10 if ten_answers else answer)
        features = datasets.Features(
            {
                "image": datasets.Image(),
                "question": datasets.Value("string"),
                "answers": datasets.Sequence(datasets.Value("string")) if ten_answers else datasets.Value("string"),
            }
        )
        splits[name] = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def main_recipe_epoch(work: Path, dry_run: bool) -> dict[str, Any]:
    """One epoch of the base recipe (bf16-mixed on the GPU; float32 on the CPU for a dry run)."""
    args = [sys.executable, "-m", "vlkit.cli", "fit", "--config", "recipes/vqa/easy_vqa_parallel.yaml"]
    args += ["--trainer.max_epochs", "1", "--test_after_fit", "false", "--runs_dir", str(work / "runs")]
    if dry_run:
        data = _tiny_vqa(work / "tiny", 32, 8, ten_answers=False)
        args += ["--data.init_args.dataset", str(data), "--data.init_args.question_column", "question"]
        args += ["--data.init_args.answer_column", "answers", "--data.init_args.image_size", "32"]
        args += ["--trainer.accelerator", "cpu", "--data.init_args.num_workers", "0"]
    else:
        args += ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed"]
    seconds, output = _run(args, timeout=600)
    metrics = next((work / "runs" / "easy_vqa_parallel").glob("version_*/metrics.csv"))
    import csv

    with open(metrics, newline="") as file:
        rows = list(csv.DictReader(file))
    accuracy = [float(r["val/vqa_acc"]) for r in rows if r.get("val/vqa_acc")]
    epoch_line = [line for line in output.splitlines() if "vlkit.cli.runs: epoch 0/" in line]
    return {
        "wall_s": round(seconds, 1),
        "val_vqa_acc": accuracy[-1] if accuracy else None,
        "epoch_line": epoch_line[-1].split(": ", 1)[-1] if epoch_line else "",
    }


def hub_step(work: Path, dry_run: bool) -> dict[str, Any]:
    """Training steps of the Hub VQA recipe on its synthetic schema twin."""
    size, n_images, steps = (32, 12, 6) if dry_run else (448, 640, 40)
    data = _tiny_vqa(work / "vqav2_twin", size, n_images, ten_answers=True)
    probe = work / "probe.json"
    args = [sys.executable, "-m", "vlkit.cli", "fit", "--config", "recipes/hub/vqav2.yaml"]
    args += ["--data.init_args.dataset", str(data), "--data.init_args.test_split", "test"]
    args += ["--data.init_args.num_answers", "6", "--data.init_args.image_size", str(size)]
    args += ["--model.init_args.image_encoder.pretrained", "false", "--test_after_fit", "false"]
    args += ["--trainer.max_steps", str(steps), "--trainer.limit_val_batches", "0", "--trainer.devices", "1"]
    args += ["--trainer.strategy", "auto", "--runs_dir", str(work / "runs"), "--trainer.callbacks+=gpu_check.StepProbe"]
    if dry_run:
        args += ["--trainer.accelerator", "cpu", "--trainer.precision", "32-true", "--data.init_args.batch_size", "4"]
        args += ["--data.init_args.num_workers", "0", "--model.init_args.fusion.depth", "1"]
        args += ["--model.init_args.image_encoder.backbone", "resnet10t"]
    env = {"GPU_CHECK_PROBE": str(probe), "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), os.environ.get("PYTHONPATH", "")])}
    _run(args, env=env, timeout=600)
    result = json.loads(probe.read_text())
    name = torch.cuda.get_device_name() if torch.cuda.is_available() and not dry_run else "cpu"
    peak = next((value for key, value in PEAK_BF16_TFLOPS.items() if key in name), None)
    if result["flops_per_step"] and result["median_step_s"]:
        result["tflops"] = result["flops_per_step"] / result["median_step_s"] / 1e12
        result["share_of_peak"] = result["tflops"] / peak if peak else None
    result.update(device=name, image_size=size, batch_size=4 if dry_run else 64)
    return result


def _fmt(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def markdown(result: dict[str, Any]) -> str:
    main, hub = result["main_recipe"], result["hub_step"]
    lines = [
        "# vlkit on one GPU",
        "",
        f"Written by `python scripts/gpu_check.py` on {result['device']}, torch {result['torch']}"
        + (" — **dry run on the CPU at tiny sizes: these numbers mean nothing**" if result["dry_run"] else "")
        + ".",
        "",
        "## One epoch of the base recipe in bf16-mixed",
        "",
        "| wall time (whole command) | validation VQA accuracy after epoch 0 | epoch log |",
        "|---|---|---|",
        f"| {main['wall_s']} s | {_fmt(main['val_vqa_acc'], 4)} | {main['epoch_line']} |",
        "",
        "## The Hub VQA recipe's training step (synthetic VQAv2 twin)",
        "",
        "| image size | batch | images / s | median step | peak memory | TFLOP/s | share of bf16 peak |",
        "|---|---|---|---|---|---|---|",
        (
            f"| {hub['image_size']} | {hub['batch_size']} | {_fmt(hub['images_per_s'])} | "
            f"{_fmt(hub['median_step_s'])} s | {_fmt(hub['peak_memory_gib'])} GiB | {_fmt(hub.get('tflops'))} | "
            f"{_fmt(hub.get('share_of_peak'))} |"
        ),
        "",
    ]
    for name, table in result["layers"].items():
        lines += [f"## Layers ({name})", "", table.strip(), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance_gpu.md"))
    parser.add_argument("--json", default=None, help="also write the results as JSON here")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (for the tests)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no GPU: run on a GPU machine, or --dry-run to check the script on the CPU")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        result = {
            "dry_run": args.dry_run,
            "device": "cpu" if args.dry_run else torch.cuda.get_device_name(),
            "torch": torch.__version__,
            "main_recipe": main_recipe_epoch(work, args.dry_run),
            "hub_step": hub_step(work, args.dry_run),
            "layers": layers(work, args.dry_run),
        }
    Path(args.out).write_text(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
