"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_python_examples():
    assert BLOCKS


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_example_runs(index):
    namespace: dict = {}
    exec(compile(BLOCKS[index], f"README.md[python block {index}]", "exec"), namespace)  # noqa: S102
    if "out" in namespace:  # the fusion example: check the shapes it states
        out = namespace["out"]
        assert tuple(out.image.shape) == (8, 512) and tuple(out.text.shape) == (8, 300)
        assert tuple(out.image_weights.shape) == (8, 196) and tuple(out.text_weights.shape) == (8, 12)
        assert (out.text_weights[:, 9:] == 0).all()
