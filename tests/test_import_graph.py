"""Imports run one way: attention → vision, text → fusion → models → data → tasks → cli.

Every module of ``vlkit`` is parsed (``ast``, imports inside functions included) into a graph of
the vlkit modules it imports. The test fails on an import circle and on an import from a later
layer (or between two packages of the same layer), naming the files.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1] / "vlkit"

#: vlkit's layers, lowest first. A module may import from its own package and from lower layers.
LAYERS: list[tuple[str, ...]] = [
    ("vlkit", "vlkit.cache", "vlkit.config"),  # foundations: no layer of their own
    ("vlkit.attention", "vlkit.metrics"),
    ("vlkit.vision", "vlkit.text"),
    ("vlkit.fusion",),
    ("vlkit.models",),
    ("vlkit.data",),
    ("vlkit.tasks",),
    ("vlkit.viz", "vlkit.report", "vlkit.testing"),  # tools over trained tasks
    ("vlkit.cli",),
    ("vlkit.__main__",),  # the `vlkit` command: dispatches to report or cli
]


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """``{dotted module name: file}`` of every module of the package at ``root``."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` (file ``path``) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, `level - 1` packages up
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """``{module: modules of vlkit it imports}``."""
    files = module_files(root)
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def layer_of(module: str) -> tuple[int, str]:
    """``(layer index, package)`` of a module: the longest package of :data:`LAYERS` it is in.

    Raises:
        LookupError: a module outside every layer (add its package to :data:`LAYERS`).
    """
    best = None
    for index, packages in enumerate(LAYERS):
        for package in packages:
            inside = module == package or module.startswith(package + ".")
            if inside and (best is None or len(package) > len(best[1])):
                best = (index, package)
    if best is None:
        raise LookupError(f"{module} is in no layer of LAYERS")
    return best


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of two or more modules
    (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a later layer, or between two packages of the same layer, as a message
    naming both files."""
    files = module_files()
    problems = []
    for module, targets in sorted(graph.items()):
        rank, package = layer_of(module)
        for target in sorted(targets):
            target_rank, target_package = layer_of(target)
            if target_package == package or target_rank < rank:
                continue
            where = "a later layer than" if target_rank > rank else "in the same layer as"
            problems.append(
                f"{files[module].relative_to(ROOT.parent)} imports {files[target].relative_to(ROOT.parent)} "
                f"({target_package} is {where} {package})"
            )
    return problems


def test_every_module_is_in_a_layer():
    # every package of LAYERS lies inside "vlkit", so a module is unplaced when it falls only in that
    unplaced = [module for module in module_files() if module != "vlkit" and layer_of(module)[1] == "vlkit"]
    assert not unplaced, f"modules in no layer of LAYERS (add their package): {unplaced}"


def test_no_import_circle():
    found = circles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_run_one_way():
    problems = wrong_way_imports(import_graph())
    assert not problems, "\n".join(problems)


# the checks themselves can fail: a small graph with a circle and a wrong-way import


def test_circles_finds_a_circle_and_ignores_a_chain():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_wrong_way_imports_names_both_files():
    graph = {
        "vlkit.vision.encoder": {"vlkit.tasks.base", "vlkit.attention.masking"},
        "vlkit.vision.cbam": {"vlkit.text.lstm"},
    }
    problems = wrong_way_imports(graph)
    assert len(problems) == 2
    assert "vlkit/vision/encoder.py imports vlkit/tasks/base.py" in problems[1]
    assert "vlkit/vision/cbam.py imports vlkit/text/lstm.py" in problems[0]
    assert "vlkit.text is in the same layer as vlkit.vision" in problems[0]
    assert "vlkit.tasks is a later layer than vlkit.vision" in problems[1]


def test_relative_imports_are_resolved(tmp_path):
    package = tmp_path / "vlkit" / "fusion"
    package.mkdir(parents=True)
    (tmp_path / "vlkit" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("from .a import x\n")
    (package / "a.py").write_text("from ..tasks import y\nx = 1\n")
    (tmp_path / "vlkit" / "tasks.py").write_text("from vlkit.fusion import x\ny = 2\n")
    graph = import_graph(tmp_path / "vlkit")
    assert graph["vlkit.fusion.a"] == {"vlkit.tasks"}
    assert graph["vlkit.fusion"] == {"vlkit.fusion.a"}
    assert circles(graph) == [["vlkit.fusion", "vlkit.fusion.a", "vlkit.tasks"]]


@pytest.mark.parametrize("module", ["vlkit.fusion.registry", "vlkit.tasks.base", "vlkit.cli.train"])
def test_layer_of_known_modules(module):
    assert layer_of(module)[1] == module.rsplit(".", 1)[0]
