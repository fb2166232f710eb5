"""Layout rules: plugin.py is each plugin's thin table of hooks; nothing imports it back."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p for p in (ROOT / "plugins").glob("*/src/*") if (p / "plugin.py").is_file())


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_no_module_of_a_plugin_imports_its_plugin_table(package):
    table = f"{package.name}.plugin"
    offenders = [p.name for p in package.glob("*.py") if p.name != "plugin.py" and table in imported_modules(p)]
    assert offenders == [], f"{offenders} import {table}: move what they need out of plugin.py"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_a_plugin_imports_no_other_plugin(package):
    others = {p.name for p in PACKAGES} - {package.name}
    for module in package.glob("*.py"):
        imported = {name.split(".")[0] for name in imported_modules(module)}
        assert not imported & others, f"{module} imports {imported & others}"


def test_the_core_imports_no_plugin():
    plugins = {p.name for p in PACKAGES}
    for module in (ROOT / "core" / "src" / "qvl").rglob("*.py"):
        imported = {name.split(".")[0] for name in imported_modules(module)}
        assert not imported & plugins, f"{module} imports {imported & plugins}"
