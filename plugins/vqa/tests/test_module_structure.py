"""The package's shape: ``plugin.py`` is the table of hook implementations that no other module imports, the
modules import one another without a circle, none is over 450 lines, and the core is reached through its public
names only. Every import counts: those inside functions and under ``TYPE_CHECKING`` too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import qvl_vqa

PACKAGE = Path(qvl_vqa.__file__).parent
MAX_LINES = 450


def modules() -> dict[str, Path]:
    return {path.stem: path for path in sorted(PACKAGE.glob("*.py"))}


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """``(module, imported names)`` of every absolute import in ``path``."""
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    graph = {}
    for name, path in modules().items():
        imported = set()
        for module, names in imports(path):
            parts = module.split(".")
            if parts[0] == "qvl_vqa":
                imported.update(parts[1:2] or names)  # `from qvl_vqa import shard_writer` names the module
        graph[name] = imported - {name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, path = [], {}, []

    def visit(module: str) -> None:
        state[module] = "open"
        path.append(module)
        for other in sorted(graph.get(module, ())):
            if state.get(other) == "open":
                found.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other)
        path.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert {"plugin", "data", "generation", "shard_writer", "trajectory", "store_formats"} <= set(graph)
    assert "data" in graph["plugin"]
    assert {"shard_writer", "generation_plan"} <= graph["generation"]


def test_no_module_imports_the_plugin_table():
    assert [name for name, imported in import_graph().items() if "plugin" in imported] == []


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_the_circle_finder_finds_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_module_over_450_lines():
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def test_only_public_core_names():
    private = []
    for name, path in modules().items():
        for module, names in imports(path):
            parts = module.split(".")
            if parts[0] == "qvl" and any(part.startswith("_") for part in parts[1:] + names):
                private.append(f"{name}: {module} {names}")
        for node in ast.walk(parsed(path)):  # qvl.something._name
            if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
                root = node.value
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id == "qvl":
                    private.append(f"{name}: line {node.lineno} .{node.attr}")
    assert private == []
