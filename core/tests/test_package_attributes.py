"""``import qvl`` stays light, yet every public module is an attribute of the package."""

import subprocess
import sys

import pytest

import qvl


def _fresh_python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def test_import_qvl_imports_no_torch_and_no_public_module_until_used():
    loaded = _fresh_python("import sys, qvl; print(sorted(m for m in sys.modules if m == 'torch' or "
                           "m in {'qvl.' + n for n in qvl.PUBLIC_MODULES}))")
    assert loaded == str(sorted({"qvl.errors", "qvl.task"}))  # what qvl's own top level needs, nothing heavy


def test_the_readme_spelling_qvl_build_data_folder_works_after_a_plain_import():
    assert _fresh_python("import qvl; print(qvl.build.data_folder.__name__)") == "data_folder"


@pytest.mark.parametrize("name", sorted(qvl.PUBLIC_MODULES))
def test_every_public_module_is_an_attribute(name):
    module = getattr(qvl, name)
    assert module.__name__ == f"qvl.{name}" and name in dir(qvl)


@pytest.mark.parametrize("name", sorted(qvl.PUBLIC_CLASSES))
def test_the_public_classes_are_top_level_names(name):
    assert getattr(qvl, name) is getattr(__import__(qvl.PUBLIC_CLASSES[name], fromlist=[name]), name)


def test_an_unknown_attribute_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="'no_such_thing'"):
        qvl.no_such_thing  # noqa: B018
