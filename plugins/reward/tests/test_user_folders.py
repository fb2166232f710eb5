"""A folder a user names is theirs: make-data and train never delete or overwrite it."""

import pytest

import qvl


def _users_folder(tmp_path):
    folder = tmp_path / "my_lerobot_set"
    (folder / "meta").mkdir(parents=True)
    (folder / "meta" / "notes.txt").write_text("recorded by hand, not reproducible")
    return folder


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in folder.rglob("*"))


def test_make_data_refuses_a_users_folder_and_leaves_it_untouched(tmp_path, qvl_run_stage):
    folder = _users_folder(tmp_path)
    before = _snapshot(folder)
    with pytest.raises(qvl.UserError, match="not written by qvl.*choose another task.data_dir"):
        qvl_run_stage("reward", "make-data", f"task.data_dir={str(folder)!r}")
    assert _snapshot(folder) == before


def test_train_on_a_users_folder_writes_nothing_into_it(tmp_path, qvl_run_stage, qvl_quick_run):
    folder = _users_folder(tmp_path)
    before = _snapshot(folder)
    with pytest.raises(qvl.UserError, match="info.json"):
        qvl_run_stage("reward", "train", *qvl_quick_run, f"task.data_dir={str(folder)!r}")
    assert _snapshot(folder) == before
