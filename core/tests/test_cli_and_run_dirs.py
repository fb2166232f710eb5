"""The command line where a run ends unusually: a reader that closes the pipe, a full disk met by
a plugin's own write, a run_name taken by a user's folder, a run directory of another task."""

from __future__ import annotations

import errno
import pathlib
import subprocess
import sys

import attrs
import pytest

import qvl
from qvl.cli import main
from qvl.config import ConfigError, load_config
from qvl.runner.rundir import RunDir
from qvl.runner.stages import run_stage


@pytest.mark.parametrize("command", ["tasks", "plugins"])
def test_a_reader_that_closes_the_pipe_ends_the_listing_quietly(command):
    # `qvl tasks | head -1`: the reader is gone before qvl writes
    process = subprocess.Popen([sys.executable, "-m", "qvl", command], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait() == 141  # as a Unix tool ended by SIGPIPE
    assert stderr == ""


def test_a_full_disk_under_a_plain_write_is_one_line_not_a_bug(tmp_path, monkeypatch, capsys):
    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    assert main(["new-plugin", "gripper", "--dir", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"qvl: error: {tmp_path / 'qvl-gripper' / 'pyproject.toml'}: out of disk space")
    assert " free there" in lines[0] and "internal error" not in lines[0]


@attrs.define
class OtherConfig:
    size: int = 3


@pytest.fixture
def host(qvl_host):
    qvl_host.tasks.setdefault("other", qvl.Task(name="other", config_class=OtherConfig, plugin="qvl.colors"))
    yield qvl_host
    qvl_host.tasks.pop("other", None)


def _colors_run(host, path: pathlib.Path) -> RunDir:
    """A colors run directory as train writes it before its first step."""
    run = RunDir(path)
    run.claim("colors")
    run.write_config(load_config(host.task("colors")))
    return run


@pytest.mark.parametrize(("stage", "resume"), [("eval", False), ("predict", False), ("train", True),
                                               ("train", False)])
def test_a_run_of_another_task_is_named_as_such(host, tmp_path, stage, resume):
    run = _colors_run(host, tmp_path / "run")
    before = sorted(p.name for p in run.path.iterdir())
    with pytest.raises(qvl.UserError) as refused:
        run_stage(host, "other", stage, run_dir=run.path, resume=resume)
    assert not isinstance(refused.value, ConfigError)
    assert str(refused.value) == (f"{run.path}: this run belongs to task 'colors', not 'other'; use "
                                  f"'qvl run colors {stage} --run-dir {run.path}', or another --run-dir")
    assert sorted(p.name for p in run.path.iterdir()) == before
    assert RunDir(run.path).saved_config()["task_name"] == "colors"


def test_run_name_of_a_users_folder_does_not_suggest_resuming_it(host, tmp_path, qvl_quick_run):
    mine = tmp_path / "runs" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    overrides = [*qvl_quick_run, f"output_dir={str(tmp_path / 'runs')!r}", "run_name=mine"]
    with pytest.raises(ConfigError) as refused:
        run_stage(host, "colors", "train", overrides=overrides)
    (problem,) = refused.value.problems
    assert problem == (f"run_name 'mine': {mine} already exists and is not a qvl run directory; "
                       "choose another run_name or output_dir")
    assert "--resume" not in problem
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_failed_run_is_not_removed_for_its_name_while_it_holds_a_users_file(host, tmp_path, qvl_quick_run):
    run = _colors_run(host, tmp_path / "runs" / "first")
    (run.path / "my-notes.md").write_text("what I changed")
    overrides = [*qvl_quick_run, f"output_dir={str(tmp_path / 'runs')!r}", "run_name=first"]
    with pytest.raises(ConfigError, match=r"holds files qvl did not write \(my-notes.md\); nothing was changed"):
        run_stage(host, "colors", "train", overrides=overrides)
    assert (run.path / "my-notes.md").read_text() == "what I changed"


def test_a_data_set_qvl_wrote_is_not_taken_as_a_run_dir(host, tmp_path, qvl_quick_run):
    from qvl.build import build_directory

    data = build_directory(tmp_path / "data", lambda out: (out / "x.txt").write_text("x"), kind="dataset")
    with pytest.raises(qvl.UserError, match="a dataset folder qvl wrote, not a run directory; nothing was changed"):
        run_stage(host, "colors", "train", overrides=qvl_quick_run, run_dir=data)
    assert sorted(p.name for p in data.iterdir()) == [".qvl.json", "x.txt"]
