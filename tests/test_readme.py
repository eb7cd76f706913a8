"""The README's Python examples run as written, and give the shapes their comments state."""

import re
from pathlib import Path

import pytest
import torch

README = (Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)
# a line `a.shape, b.shape   # (8, 512), (8, 300) ...` states the shapes of its expressions
SHAPE_LINE = re.compile(r"^(?P<expr>[^#=]*\.shape[^#=]*?)\s+#\s*(?P<comment>.*)$")
TUPLE = re.compile(r"\((\d+(?:, \d+)*)\)")


def stated_shapes(block: str) -> list[tuple[str, list[tuple[int, ...]]]]:
    checks = []
    for line in block.splitlines():
        match = SHAPE_LINE.match(line)
        if match:
            shapes = [tuple(int(x) for x in t.split(", ")) for t in TUPLE.findall(match["comment"])]
            checks.append((match["expr"].strip(), shapes))
    return checks


def test_readme_has_python_examples_with_stated_shapes():
    assert BLOCKS and all(stated_shapes(block) for block in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_example_runs(index):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), namespace)  # noqa: S102
    for expr, shapes in stated_shapes(BLOCKS[index]):
        value = eval(expr, namespace)
        several = isinstance(value, tuple) and not isinstance(value, torch.Size)  # `a.shape, b.shape`
        got = [tuple(v) for v in (value if several else (value,))]
        assert got == shapes, f"README states {expr} = {shapes}, got {got}"
    if "text_mask" in namespace:  # the fusion example: padding gets zero weight
        assert (namespace["out"].text_weights[:, 9:] == 0).all()
