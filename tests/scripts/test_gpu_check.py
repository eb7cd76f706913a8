"""scripts/gpu_check.py: the GPU check's dry run on the CPU runs every part and writes the page."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_gpu_check_dry_run_writes_every_section(tmp_path):
    out, raw = tmp_path / "performance_gpu.md", tmp_path / "gpu.json"
    done = subprocess.run(
        [sys.executable, "scripts/gpu_check.py", "--dry-run", "--out", str(out), "--json", str(raw)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    page = out.read_text()
    for heading in (
        "## One epoch of the base recipe in bf16-mixed",
        "## The Hub VQA recipe's training step (synthetic VQAv2 twin)",
        "## Layers (eager)",
        "## Layers (torch.compile)",
    ):
        assert heading in page, heading
    assert "dry run on the CPU" in page
    result = json.loads(raw.read_text())
    assert result["main_recipe"]["val_vqa_acc"] is not None and result["main_recipe"]["epoch_line"]
    hub = result["hub_step"]
    assert hub["steps"] >= 1 and hub["images_per_s"] > 0 and hub["flops_per_step"] > 0
    assert "| parallel_coattention |" in result["layers"]["eager"]
