"""scripts/isolated_check.py: what it pins for --floors and which README commands it runs."""

import importlib.util
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("isolated_check", ROOT / "scripts" / "isolated_check.py")
isolated_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(isolated_check)


def project(path: str) -> dict:
    return tomllib.loads((ROOT / path / "pyproject.toml").read_text())


def test_floors_pin_every_declared_floor_but_torch_and_the_core_itself():
    pins = isolated_check.floor_constraints(project("core"), project("plugins/vla_flow"))
    assert "transformers==5.0" in pins and "tokenizers==0.22.1" in pins and "tiktoken==0.12" in pins
    assert "websockets==13" in pins and "miniworld==2.1" in pins  # the plugin's own and its extras'
    assert "pyarrow==15" in pins  # the core's [lerobot] extra
    assert not [p for p in pins if p.split("==")[0] in ("torch", "torchvision", "qvl-core")]
    assert len(pins) == len({p.split("==")[0] for p in pins})
    # tomli is only for Python < 3.11: its marker leaves it out here
    assert not [p for p in pins if p.startswith("tomli==")]


@pytest.mark.parametrize("plugin", isolated_check.PLUGINS)
def test_each_plugins_readme_has_the_example_commands_the_check_runs(plugin):
    commands = isolated_check.readme_example_commands(plugin)
    stages = [words[3] for words in commands]
    assert stages[:2] == ["train", "eval"], commands
    run_dirs = {words[words.index("--run-dir") + 1] for words in commands}
    assert len(run_dirs) == 1 and run_dirs.pop().endswith("-example")
    train = commands[0]
    assert any(word.startswith("train.steps=") for word in train)  # a few steps, not the default run


def test_the_closing_counts_of_pytest_are_read():
    assert isolated_check.test_counts("...\n100 passed, 2 skipped in 88.97s (0:01:28)\n") == {
        "passed": 100, "skipped": 2}
    assert isolated_check.test_counts("no tests ran in 0.01s") == {}


def test_a_work_folder_the_script_did_not_make_is_refused_untouched(tmp_path):
    import subprocess
    import sys

    (tmp_path / "notes.txt").write_text("mine")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "isolated_check.py"), "--torch-base", str(tmp_path),
                           "--work", str(tmp_path), "grasp"], capture_output=True, text=True)
    assert done.returncode == 2 and "a non-empty folder this script did not make" in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
