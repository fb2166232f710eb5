"""Every distribution declares what it imports, and only that (issue 28): deptry on each of the six.

deptry reads a distribution's pyproject.toml (its ``[tool.deptry]`` says which module is first
party, how distribution and import names differ, that the ``test`` extra is development tools, and
the few run-time needs no code imports) and the imports under ``src/``. It fails on an import no
requirement covers (DEP001, DEP003), a requirement nothing imports (DEP002) and a test tool imported
by the run-time code (DEP004).
"""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTIONS = ["core", "plugins/grasp", "plugins/reward", "plugins/vqa", "plugins/segment", "plugins/vla_flow"]

try:
    import deptry  # noqa: F401
except ImportError:  # pragma: no cover - make setup installs it (Makefile, qvl-core[test])
    pytest.skip("deptry is not installed: pip install 'deptry>=0.25' (make setup installs it)",
                allow_module_level=True)


def _deptry(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "deptry", "src", "--no-ansi"], cwd=folder,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_distribution_declares_exactly_what_it_imports(distribution):
    result = _deptry(ROOT / distribution)
    assert result.returncode == 0, f"deptry on {distribution}:\n{result.stdout}{result.stderr}"
    assert "No dependency issues found" in result.stdout + result.stderr


def test_the_check_fails_on_an_undeclared_import_and_on_a_test_tool_as_a_runtime_dependency(tmp_path):
    (tmp_path / "src" / "qvl_probe").mkdir(parents=True)
    (tmp_path / "src" / "qvl_probe" / "__init__.py").write_text("import numpy\nimport filelock\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "qvl-probe"\nversion = "0"\ndependencies = ["numpy>=1.26", "pytest>=8"]\n'
        '[tool.deptry]\nknown_first_party = ["qvl_probe"]\n')
    result = _deptry(tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "'filelock' imported but" in out  # installed only as another package's dependency
    assert "'pytest' defined as a dependency but not used" in out
