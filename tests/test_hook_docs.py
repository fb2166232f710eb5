"""Every hook is documented (spec docstring and README) and exercised by a test named after it."""

import inspect
import re
from pathlib import Path

import pytest

from qvl import hookspec

ROOT = Path(__file__).resolve().parents[1]
HOOKS = sorted(name for name, value in vars(hookspec).items()
               if callable(value) and hasattr(value, "qvl_spec"))


def test_there_are_hooks():
    assert {"register_tasks", "load_backbone", "build_dataset", "build_collator", "build_head", "loss",
            "decode", "evaluate"} <= set(HOOKS)


@pytest.mark.parametrize("name", HOOKS)
def test_spec_docstring_names_every_parameter_the_return_and_firstresult(name):
    spec = getattr(hookspec, name)
    doc = " ".join(inspect.getdoc(spec).split())
    for parameter in inspect.signature(spec).parameters:
        assert f":param {parameter}:" in doc, f"{name}: parameter {parameter} undocumented"
    assert ":returns:" in doc
    firstresult = spec.qvl_spec["firstresult"]
    assert ("Stops at the first non-None result" in doc) == firstresult


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_in_the_readme_hook_table(name):
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"^\| `{name}\(", readme, re.M), f"hook {name} missing from the README's hook table"


@pytest.mark.parametrize("name", HOOKS)
def test_hook_has_a_test_named_after_it(name):
    sources = [p.read_text() for d in ("core/tests", "tests") for p in (ROOT / d).rglob("test_*.py")]
    pattern = re.compile(rf"def test_hook_\w*{name}")
    assert any(pattern.search(text) for text in sources), f"no test_hook_...{name}... test"
