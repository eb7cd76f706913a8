"""Import rules from STYLE.md: light imports, Lightning only where training happens."""

import subprocess
import sys

LAYER_PACKAGES = [
    "vlkit",
    "vlkit.attention",
    "vlkit.fusion",
    "vlkit.vision",
    "vlkit.text",
    "vlkit.models",
    "vlkit.metrics",
]


def modules_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


# what the layer dependencies load by themselves (torchmetrics imports transformers when it is
# installed); the rules are about what vlkit adds
DEPENDENCIES = "import torch, torchvision, timm, einops, torchmetrics"


def test_layer_packages_do_not_import_lightning_datasets_or_transformers():
    loaded = modules_after("import " + ", ".join(LAYER_PACKAGES)) - modules_after(DEPENDENCIES)
    assert set(LAYER_PACKAGES) <= loaded
    assert not loaded & {"pytorch_lightning", "lightning", "datasets", "transformers"}


def test_training_packages_import_datasets_lazily():
    loaded = modules_after("import vlkit.data, vlkit.tasks, vlkit.cli") - modules_after(DEPENDENCIES)
    assert "pytorch_lightning" in loaded
    assert not loaded & {"datasets", "transformers"}
