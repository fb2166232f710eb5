"""``qvl new-plugin``: the generated package installs, registers its task and passes its own tests."""

import json
import os
import subprocess
import sys

import pytest

from qvl.errors import UserError
from qvl.scaffold import new_plugin


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sft", "head"])
def test_new_plugin_generates_a_package_whose_own_tests_pass(kind, tmp_path, run_qvl):
    name = f"demo-{kind}"
    created = run_qvl("new-plugin", name, "--dir", str(tmp_path), "--kind", kind)
    assert created.returncode == 0, created.stderr
    package = tmp_path / f"qvl-{name}"
    assert (package / "src" / f"qvl_demo_{kind}" / "plugin.py").is_file()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(package)], check=True, capture_output=True, text=True)

    tasks = json.loads(run_qvl("tasks", site=site).stdout)
    (listed,) = [t for t in tasks if t["name"] == name]
    assert listed["plugin"] == name

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package, env=env,
                            capture_output=True, text=True, timeout=600)
    assert tested.returncode == 0, tested.stdout[-4000:] + tested.stderr[-2000:]
    assert "2 passed" in tested.stdout


@pytest.mark.parametrize("name", ["", "two words", "dots.in.name", "slash/name"])
def test_new_plugin_refuses_a_bad_name(name, tmp_path):
    with pytest.raises(UserError, match="letters, digits"):
        new_plugin(name, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_refuses_a_non_empty_folder_with_exit_2_and_one_line(tmp_path, run_qvl):
    (tmp_path / "qvl-mine").mkdir()
    (tmp_path / "qvl-mine" / "notes.txt").write_text("mine")
    refused = run_qvl("new-plugin", "mine", "--dir", str(tmp_path))
    assert refused.returncode == 2
    assert refused.stderr.splitlines()[0] == f"qvl: error: {tmp_path / 'qvl-mine'}: already exists and is not empty; " \
                                             "choose another --dir or name"
    assert "Traceback" not in refused.stderr
    assert [p.name for p in (tmp_path / "qvl-mine").iterdir()] == ["notes.txt"]
    bad = run_qvl("new-plugin", "no good", "--dir", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.startswith("qvl: error: plugin name 'no good'")


def test_new_plugin_fills_an_empty_existing_folder(tmp_path):
    (tmp_path / "qvl-fresh").mkdir()
    assert new_plugin("fresh", tmp_path, "head") == tmp_path / "qvl-fresh"
    assert (tmp_path / "qvl-fresh" / "tests" / "test_fresh.py").is_file()
