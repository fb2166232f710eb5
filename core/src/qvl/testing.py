"""pytest fixtures for qvl plugin authors, registered through the ``pytest11`` entry point.

Installing qvl-core makes them available in any test suite::

    def test_my_task_trains(qvl_run_stage):
        result = qvl_run_stage("my-task", "train", *qvl_quick_run)
        assert result.steps == 2

Nothing here imports torch at import time, so collecting tests stays fast.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# Overrides that make any task's run finish in seconds on a CPU.
QUICK_RUN = (
    "train.steps=2",
    "train.batch_size=2",
    "train.log_every=1",
    "train.warmup_steps=0",
    "eval.batch_size=2",
    "eval.max_samples=4",
    "predict.batch_size=2",
    "predict.max_samples=4",
)


def folder_snapshot(folder: Path) -> list[tuple[str, bytes | None]]:
    """Every path below ``folder`` with its bytes (``None`` for a folder), sorted: two equal
    snapshots prove that a stage left a user's folder exactly as it was."""
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in folder.rglob("*"))


@contextmanager
def left_untouched(folder: Path) -> Iterator[None]:
    """Asserts that what runs inside leaves ``folder`` exactly as it was: the same ``folder_snapshot`` after."""
    before = folder_snapshot(folder)
    yield
    assert folder_snapshot(folder) == before


@pytest.fixture(scope="session")
def qvl_quick_run() -> tuple[str, ...]:
    """``--set`` overrides for a two-step run on a handful of samples."""
    return QUICK_RUN


@pytest.fixture(scope="session")
def qvl_host() -> Any:
    """The plugin host (plugin manager, registered tasks, load errors) as the CLI builds it."""
    from qvl.plugins import load_plugins

    return load_plugins()


@pytest.fixture(scope="session")
def qvl_tiny_backbone() -> Any:
    """The embedded tiny Qwen3-VL, frozen, loaded once per test session."""
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig

    return load(BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="frozen"))


@pytest.fixture
def qvl_run_dir(tmp_path: Path) -> Path:
    """A fresh run directory for one test."""
    return tmp_path / "run"


@pytest.fixture
def qvl_run_stage(qvl_host: Any, qvl_run_dir: Path) -> Callable[..., Any]:
    """Run one stage end to end in this process: ``qvl_run_stage(task, stage, *overrides)``.

    Every stage of one test shares ``qvl_run_dir``, so ``train`` then ``eval`` then ``predict``
    work as they do from the command line. Keyword arguments: ``config_files``, ``resume``,
    ``predict_input``, ``save_vis``, ``run_dir``, ``checkpoint``.
    """
    from qvl.runner.stages import run_stage

    def run(task: str, stage: str, *overrides: str, config_files: tuple = (), resume: bool = False,
            predict_input: str | None = None, save_vis: bool = False, run_dir: Path | None = None,
            checkpoint: str | None = None) -> Any:
        return run_stage(qvl_host, task, stage, config_files=config_files, overrides=overrides,
                         run_dir=run_dir or qvl_run_dir, resume=resume, predict_input=predict_input,
                         save_vis=save_vis, checkpoint=checkpoint)

    return run


def package_modules(package: ModuleType) -> dict[str, Path]:
    """The top-level modules of ``package`` by name."""
    return {path.stem: path for path in sorted(Path(package.__file__).parent.glob("*.py"))}


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


def import_graph(package: ModuleType) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    graph = {}
    for name, path in package_modules(package).items():
        imported = set()
        for module, names in imports(path):
            parts = module.split(".")
            if parts[0] == package.__name__:
                imported.update(parts[1:2] or names)  # `from qvl_x import record` names the module
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


class PackageShapeTests:
    """A plugin package's shape, as tests for a plugin's suite to inherit::

        class TestPackageShape(PackageShapeTests):
            package = qvl_my_plugin
            expected_modules = {"plugin", "data", "model"}  # the import graph must list them
            expected_imports = {"plugin": {"data"}}  # and see these imports

    ``plugin.py`` is the table of hook implementations that no other module imports, the modules
    import one another without a circle, none is over ``MAX_LINES`` lines, and the core is reached
    through its public names only. Every import counts: those inside functions and under
    ``TYPE_CHECKING`` too.
    """

    package: ModuleType
    MAX_LINES = 450
    expected_modules: set[str] = {"plugin"}
    expected_imports: dict[str, set[str]] = {}

    def test_the_graph_sees_the_package(self):
        graph = import_graph(self.package)
        assert self.expected_modules <= set(graph)
        for module, imported in self.expected_imports.items():
            assert imported <= graph[module]

    def test_no_module_imports_the_plugin_table(self):
        assert [name for name, imported in import_graph(self.package).items() if "plugin" in imported] == []

    def test_no_import_circles(self):
        assert circles(import_graph(self.package)) == []

    def test_the_circle_finder_finds_circles(self):
        assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]

    def test_no_module_over_450_lines(self):
        sizes = {name: len(path.read_text(encoding="utf-8").splitlines())
                 for name, path in package_modules(self.package).items()}
        assert {name: lines for name, lines in sizes.items() if lines > self.MAX_LINES} == {}

    def test_only_public_core_names(self):
        private = []
        for name, path in package_modules(self.package).items():
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
