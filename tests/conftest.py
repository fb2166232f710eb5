import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
os.environ.setdefault("QVL_CACHE", str(ROOT / ".venv" / "qvl-cache"))


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    block = text[text.index(f"<!-- {marker}:start -->"):text.index(f"<!-- {marker}:end -->")]
    return block.split("```python\n", 1)[1].rsplit("```", 1)[0]


def readme_plugin_example() -> str:
    """The one-file plugin of the README's guide, between its two markers."""
    return _readme_block("plugin-example")


def readme_sft_example() -> str:
    """The guide's second one-file plugin, the LM-head SFT counting task (``qvl-count``)."""
    return _readme_block("sft-example")


def _one_file_distribution(work: Path, name: str, entry_point: str, code: str) -> Path:
    """A folder pip can install: ``qvl-NAME`` with one module and one ``qvl`` entry point."""
    module = name.replace("-", "_")
    folder = work / name
    folder.mkdir()
    (folder / f"{module}.py").write_text(code)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = ["qvl-core"]\n'
        f'[project.entry-points.qvl]\n{entry_point} = "{module}"\n'
        f'[tool.setuptools]\npy-modules = ["{module}"]\n'
    )
    return folder


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory) -> Path:
    """Real distributions installed with pip into a private site directory.

    The README's examples (``qvl-brightness``, ``qvl-count``), a plugin that replaces/wraps hooks of the built-in
    ``colors`` task, one that fails to import, one with a misspelled hook and one whose hook asks
    for an argument no spec has.
    """
    work = tmp_path_factory.mktemp("plugins")
    examples = [_one_file_distribution(work, "qvl-brightness", "brightness", readme_plugin_example()),
                _one_file_distribution(work, "qvl-count", "count", readme_sft_example())]
    site = work / "site"
    sources = [*examples, *(FIXTURES / name for name in ("qvl-colors-extra", "qvl-broken", "qvl-typo", "qvl-badargs",
                                                       "qvl-vectors"))]
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), *map(str, sources)],
        check=True, capture_output=True, text=True,
    )
    return site


@pytest.fixture(scope="session")
def legacy_site(tmp_path_factory) -> Path:
    """Plugins of other hook API versions, installed with pip into a private site directory.

    The README's two examples exactly as they were written for hook API 3 (a ``task.name`` guard
    in every hook), ``qvl-colors-extra4`` (API 4: extends ``colors`` by declaration) and
    ``qvl-future``, which asks for a hook API this core does not provide.
    """
    work = tmp_path_factory.mktemp("legacy")
    api3 = FIXTURES / "api3"
    examples = [_one_file_distribution(work, "qvl-brightness-api3", "brightness_api3",
                                       (api3 / "qvl_brightness_api3.py").read_text()),
                _one_file_distribution(work, "qvl-count-api3", "count_api3", (api3 / "qvl_count_api3.py").read_text())]
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(site), *map(str, examples), str(FIXTURES / "qvl-colors-extra4"), str(FIXTURES / "qvl-future")],
        check=True, capture_output=True, text=True,
    )
    return site


def _run_qvl(*args: str, site: Path | None = None, env: dict | None = None, cwd: Path | None = None):
    """Run ``python -m qvl ARGS`` in a subprocess, optionally with a plugin site on the path."""
    full_env = dict(os.environ)
    if site is not None:
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), full_env.get("PYTHONPATH")]))
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "qvl", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=900)


@pytest.fixture(scope="session")
def run_qvl():
    return _run_qvl
