"""A folder qvl built is only replaced while it holds nothing but what qvl wrote; a refused build
leaves nothing behind; a build that fills the disk says so in one line and keeps the old folder."""

import errno
import json
from pathlib import Path

import pytest

from qvl import UserError
from qvl.build import MARKER, SyntheticData, build_directory, read_marker, write_synthetic
from qvl.errors import OutOfSpaceError


def _files(files: dict[str, str]):
    def build(out: Path) -> None:
        for name, text in files.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).write_text(text)
    return build


def _synthetic(n: int) -> SyntheticData:
    return SyntheticData(key="toy", fingerprint={"n": n}, plugin="qvl-toy", description="the toy set",
                         write=_files({"data_split/train.txt": "a\n" * n, "rgb/0.png": "png"}))


def test_make_data_again_refuses_a_folder_the_user_added_to_and_changes_nothing(tmp_path):
    folder = tmp_path / "D"
    write_synthetic(folder, _synthetic(1))
    (folder / "MY_FILE.txt").write_text("mine")
    (folder / "my_labels").mkdir()
    (folder / "my_labels" / "a.json").write_text("{}")
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))

    with pytest.raises(UserError) as refused:
        write_synthetic(folder, _synthetic(2))
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{folder}: ")
    assert "2 entries qvl did not write (MY_FILE.txt, my_labels/)" in message
    assert "nothing was changed" in message and "choose another task.data_dir" in message
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before
    assert (folder / "MY_FILE.txt").read_text() == "mine" and read_marker(folder)["fingerprint"] == {"n": 1}

    # the same settings still reuse it, user files and all
    write_synthetic(folder, _synthetic(1))
    assert (folder / "my_labels" / "a.json").is_file()

    # once the user's files are out, the folder is qvl's again and is replaced
    (folder / "MY_FILE.txt").unlink()
    (folder / "my_labels" / "a.json").unlink()
    (folder / "my_labels").rmdir()
    write_synthetic(folder, _synthetic(2))
    assert (folder / "data_split" / "train.txt").read_text() == "a\na\n"


def test_a_file_of_qvls_the_user_changed_is_not_replaced(tmp_path):
    folder = tmp_path / "D"
    write_synthetic(folder, _synthetic(1))
    (folder / "data_split" / "train.txt").write_text("my own split, longer than qvl's\n")
    with pytest.raises(UserError, match=r"1 file of its own changed since \(data_split/train.txt\)"):
        write_synthetic(folder, _synthetic(2))
    assert (folder / "data_split" / "train.txt").read_text() == "my own split, longer than qvl's\n"


def test_force_rebuilds_are_refused_too(tmp_path):
    folder = tmp_path / "D"
    build_directory(folder, _files({"x": "1"}), kind="dataset", fingerprint=1)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"1 entry qvl did not write \(notes.txt\)"):
        build_directory(folder, _files({"x": "2"}), kind="dataset", fingerprint=1, force=True)
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "x").read_text() == "1"


def test_a_folder_from_a_qvl_that_did_not_list_its_files_is_not_replaced(tmp_path):
    folder = tmp_path / "D"
    build_directory(folder, _files({"x": "1"}), kind="dataset", fingerprint=1)
    marker = json.loads((folder / MARKER).read_text())
    del marker["written"]  # as earlier versions wrote it
    (folder / MARKER).write_text(json.dumps(marker))
    with pytest.raises(UserError, match="earlier qvl that did not record its files.*nothing was changed"):
        build_directory(folder, _files({"x": "2"}), kind="dataset", fingerprint=2)
    assert (folder / "x").read_text() == "1"


def test_a_refused_build_leaves_no_lock_file_beside_the_users_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "photo.png").write_bytes(b"precious")
    with pytest.raises(UserError, match="nothing was changed"):
        write_synthetic(mine, _synthetic(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]

    ours = tmp_path / "ours"
    write_synthetic(ours, _synthetic(1))
    (ours / "notes.txt").write_text("mine")
    (tmp_path / ".ours.qvl-lock").unlink()
    with pytest.raises(UserError, match="nothing was changed"):
        write_synthetic(ours, _synthetic(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "ours"]


def test_a_build_that_fills_the_disk_is_one_line_and_keeps_the_previous_build(tmp_path):
    folder = tmp_path / "D"
    build_directory(folder, _files({"x": "1"}), kind="dataset", fingerprint=1)

    def fills_the_disk(out: Path) -> None:
        (out / "written").write_bytes(b"0" * 2500)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutOfSpaceError) as full:
        build_directory(folder, fills_the_disk, kind="dataset", fingerprint=2)
    message = str(full.value)
    assert "\n" not in message and isinstance(full.value, UserError)
    assert message.startswith(f"{folder}: out of disk space writing the dataset folder")
    assert " free when it started" in message
    assert " free there" in message and "the previous build is kept" in message
    assert (folder / "x").read_text() == "1" and read_marker(folder)["fingerprint"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".D.qvl-lock", "D"]  # no half-written copy
