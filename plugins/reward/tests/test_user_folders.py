"""A folder a user names is theirs: make-data and train never delete or overwrite it."""

import pytest

import qvl
from qvl.testing import left_untouched


def _users_folder(tmp_path):
    folder = tmp_path / "my_lerobot_set"
    (folder / "meta").mkdir(parents=True)
    (folder / "meta" / "notes.txt").write_text("recorded by hand, not reproducible")
    return folder


def test_make_data_refuses_a_users_folder_and_leaves_it_untouched(tmp_path, qvl_run_stage):
    folder = _users_folder(tmp_path)
    with left_untouched(folder), pytest.raises(qvl.UserError, match="not written by qvl.*choose another task.data_dir"):
        qvl_run_stage("reward", "make-data", f"task.data_dir={str(folder)!r}")


def test_train_on_a_users_folder_writes_nothing_into_it(tmp_path, qvl_run_stage, qvl_quick_run):
    folder = _users_folder(tmp_path)
    with left_untouched(folder), pytest.raises(qvl.UserError, match="info.json"):
        qvl_run_stage("reward", "train", *qvl_quick_run, f"task.data_dir={str(folder)!r}")
