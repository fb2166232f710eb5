"""The build-once helper: markers, refusal of a user's folder, atomic replacement, the lock."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qvl import UserError
from qvl.build import MARKER, build_directory, read_marker, remove_owned


def _write(files: dict[str, str]):
    def build(out: Path) -> None:
        for name, text in files.items():
            (out / name).write_text(text)
    return build


def test_builds_with_a_marker_and_reuses_while_the_fingerprint_matches(tmp_path, capsys):
    target = tmp_path / "data"
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        (out / "a.txt").write_text("one")

    build_directory(target, build, kind="dataset", fingerprint={"n": 1}, info={"plugin": "test"},
                    announce="building data")
    assert capsys.readouterr().err == "building data\n"
    marker = read_marker(target)
    assert marker["kind"] == "dataset" and marker["fingerprint"] == {"n": 1} and marker["plugin"] == "test"
    assert (target / "a.txt").read_text() == "one"
    build_directory(target, build, kind="dataset", fingerprint={"n": 1}, announce="building data")
    assert len(calls) == 1 and capsys.readouterr().err == ""  # reused, silently
    build_directory(target, _write({"b.txt": "two"}), kind="dataset", fingerprint={"n": 2})
    assert sorted(p.name for p in target.iterdir()) == sorted([MARKER, "b.txt"])  # replaced whole
    build_directory(target, _write({"c.txt": "3"}), kind="dataset", fingerprint={"n": 2}, force=True)
    assert (target / "c.txt").is_file() and not (target / "b.txt").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".data") and p.is_dir()] == []


def test_a_users_folder_is_refused_and_left_untouched(tmp_path):
    target = tmp_path / "ocid"
    target.mkdir()
    (target / "real_image.png").write_bytes(b"precious")
    with pytest.raises(UserError, match=r"ocid: the folder is not empty and was not written by qvl .*choose another"):
        build_directory(target, _write({"x": "y"}), kind="dataset", hint="choose another data_dir")
    assert [p.name for p in target.iterdir()] == ["real_image.png"]
    assert (target / "real_image.png").read_bytes() == b"precious"
    with pytest.raises(UserError, match="not written by qvl"):
        remove_owned(target)
    assert (target / "real_image.png").is_file()


def test_an_empty_folder_the_user_made_is_filled(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    build_directory(target, _write({"x": "y"}), kind="dataset")
    assert (target / "x").read_text() == "y" and read_marker(target) is not None


def test_a_failed_build_leaves_nothing_and_keeps_the_previous_one(tmp_path):
    target = tmp_path / "data"
    build_directory(target, _write({"good": "1"}), kind="dataset", fingerprint=1)

    def broken(out: Path) -> None:
        (out / "half").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_directory(target, broken, kind="dataset", fingerprint=2)
    assert (target / "good").read_text() == "1" and read_marker(target)["fingerprint"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.qvl-lock", "data"]


KILLED_BUILD = """
import os, sys, time
from pathlib import Path
from qvl.build import build_directory
def build(out):
    (out / "part-0").write_text("x")
    print("started", flush=True)
    time.sleep(60)
build_directory(Path(sys.argv[1]), build, kind="dataset", fingerprint=1)
"""


def test_a_killed_build_is_never_taken_as_complete(tmp_path):
    target = tmp_path / "data"
    process = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(target)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "started"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not target.exists()  # only a hidden temporary folder was written
    leftovers = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".data.qvl-tmp-")
    build_directory(target, _write({"done": "1"}), kind="dataset", fingerprint=1)
    assert (target / "done").is_file() and not (target / "part-0").exists()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["data"]  # the leftover was cleaned


def _build_in_process(target: str, log: str) -> None:
    def build(out: Path) -> None:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        (out / "x").write_text("y")

    build_directory(Path(target), build, kind="features", fingerprint="same")


def test_concurrent_requests_build_once(tmp_path):
    target, log = tmp_path / "cache", tmp_path / "builds.log"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_build_in_process, args=(str(target), str(log))) for _ in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    assert len(log.read_text().splitlines()) == 1
    assert json.loads((target / MARKER).read_text())["kind"] == "features"


def test_data_folder_is_the_users_or_a_synthetic_one_written_once(tmp_path, monkeypatch, capsys):
    from qvl.build import SyntheticData, data_folder, write_synthetic

    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    writes = []
    synthetic = SyntheticData(key="toy-v1", fingerprint={"n": 1}, plugin="qvl-toy", description="the toy set",
                              write=lambda out: writes.append(out) or (out / "a.txt").write_text("x"))
    mine = tmp_path / "mine"
    assert data_folder(str(mine), synthetic, create=True) == mine and not mine.exists() and writes == []
    root = data_folder("", synthetic, create=True)
    assert root == tmp_path / "cache" / "datasets" / "toy-v1" and (root / "a.txt").is_file()
    assert capsys.readouterr().err == f"qvl-toy: writing the toy set into {root}\n"
    assert data_folder("", synthetic, create=True) == root and len(writes) == 1
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="choose another task.data_dir"):
        write_synthetic(mine, synthetic)
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]


def test_a_resumable_build_gets_back_its_finished_pieces_and_only_for_the_same_fingerprint(tmp_path):
    target = tmp_path / "data"
    seen: list[list[str]] = []

    def pieces(fail_after: int | None):
        def build(out: Path) -> None:
            seen.append(sorted(p.name for p in out.iterdir()))
            for k in range(3):
                piece = out / f"piece-{k}"
                if not piece.exists():
                    piece.write_text(str(k))
                if fail_after == k:
                    raise RuntimeError("killed")
        return build

    with pytest.raises(RuntimeError, match="killed"):
        build_directory(target, pieces(fail_after=1), kind="dataset", fingerprint=1, resume=True)
    assert not target.exists()
    leftover = [p for p in tmp_path.iterdir() if ".qvl-partial-" in p.name]
    assert len(leftover) == 1 and sorted(p.name for p in leftover[0].iterdir()) == ["piece-0", "piece-1"]
    before = (leftover[0] / "piece-0").stat().st_mtime_ns

    build_directory(target, pieces(fail_after=None), kind="dataset", fingerprint=1, resume=True)
    assert seen[-1] == ["piece-0", "piece-1"]  # the second build started from the first one's pieces
    assert (target / "piece-0").stat().st_mtime_ns == before
    assert sorted(p.name for p in target.iterdir()) == [MARKER, "piece-0", "piece-1", "piece-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.qvl-lock", "data"]

    # a different fingerprint never sees another generation's pieces
    with pytest.raises(RuntimeError):
        build_directory(target, pieces(fail_after=0), kind="dataset", fingerprint=2, resume=True)
    build_directory(target, pieces(fail_after=None), kind="dataset", fingerprint=3, resume=True)
    assert seen[-1] == [] and read_marker(target)["fingerprint"] == 3
    assert not [p for p in tmp_path.iterdir() if ".qvl-partial-" in p.name]
