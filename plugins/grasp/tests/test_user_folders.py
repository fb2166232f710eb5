"""A folder a user names is theirs: make-data and train never delete or overwrite it."""

import subprocess
import sys

import pytest

import qvl
from qvl.testing import left_untouched


def _users_folder(tmp_path):
    folder = tmp_path / "real_ocid"
    (folder / "seq01" / "rgb").mkdir(parents=True)
    (folder / "seq01" / "rgb" / "result_2018-08-20.png").write_bytes(b"not synthetic")
    return folder


def test_make_data_refuses_a_users_folder_with_exit_2_and_leaves_it_untouched(tmp_path):
    folder = _users_folder(tmp_path)
    with left_untouched(folder):
        result = subprocess.run([sys.executable, "-m", "qvl", "run", "grasp", "make-data", "--set",
                                 f"task.data_dir={str(folder)!r}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"{folder}: the folder is not empty and was not written by qvl" in result.stderr
    assert "choose another task.data_dir" in result.stderr and "Traceback" not in result.stderr


def test_train_on_a_users_folder_reads_it_and_writes_nothing_into_it(tmp_path, qvl_run_stage, qvl_quick_run):
    folder = _users_folder(tmp_path)
    with left_untouched(folder), pytest.raises(qvl.UserError, match="no such OCID-Grasp split file"):
        qvl_run_stage("grasp", "train", *qvl_quick_run, f"task.data_dir={str(folder)!r}")


def test_make_data_rewrites_a_folder_it_wrote_itself(tmp_path, qvl_run_stage):
    folder = tmp_path / "synthetic"
    small = (f"task.data_dir={str(folder)!r}", "task.synthetic.train=2", "task.synthetic.val=1",
             "task.synthetic.test=1", "task.synthetic.width=64", "task.synthetic.height=48")
    qvl_run_stage("grasp", "make-data", *small)
    assert (folder / ".qvl.json").is_file()
    qvl_run_stage("grasp", "make-data", *small[:1], "task.synthetic.train=3", *small[2:])
    assert len((folder / "data_split" / "training_0.txt").read_text().splitlines()) == 3
