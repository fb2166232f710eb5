"""Reading trajectory stores: .npz tables (JSONL, datasets folders) and LeRobot data sets."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from qvl.errors import UserError
from qvl_vqa import npz_frames
from qvl_vqa.npz_store import NpzStore
from qvl_vqa.store_formats import open_store
from qvl_vqa.trajectory import Trajectory

QUALITIES = ("successful", "suboptimal", "failure")


def write_npz_store(root: Path, *, n: int = 3, frames: int = 10, size: int = 8, compressed: bool = False,
                    shapes: bool = True) -> tuple[list[dict], dict[str, np.ndarray]]:
    """n trajectories of random frames; the table at root/trajectories.jsonl (rows also returned)."""
    rng = np.random.default_rng(0)
    (root / "frames").mkdir(parents=True, exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    rows, arrays = [], {}
    for k in range(n):
        t = frames + k
        array = rng.integers(0, 256, size=(t, size, size, 3), dtype=np.uint8)
        path = f"frames/traj_{k}.npz"
        save(root / path, frames=array)
        row = {"id": f"traj_{k}", "npz_path": path, "task": f"task {k % 2}", "quality_label": QUALITIES[k % 3],
               "data_source": "unit", "partial_success": [1.0, 0.4, None][k % 3], "fps": 5.0}
        if shapes:
            row.update(num_frames=t, frames_shape=[t, size, size, 3])
        rows.append(row)
        arrays[row["id"]] = array
    write_jsonl(root / "trajectories.jsonl", rows)
    return rows, arrays


def write_jsonl(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def same_records(a: list[Trajectory], b: list[Trajectory]) -> bool:
    def fields(t: Trajectory) -> tuple:
        return (t.id, t.task, t.data_source, t.quality_label, t.partial_success, t.num_frames, t.frames_shape,
                t.npz_path, t.fps)

    return [fields(t) for t in a] == [fields(t) for t in b]


# -- tables --------------------------------------------------------------------------------------


def test_jsonl_and_datasets_tables_read_the_same(tmp_path: Path) -> None:
    import datasets

    rows, _ = write_npz_store(tmp_path, n=4)
    jsonl = open_store(tmp_path)
    assert isinstance(jsonl, NpzStore) and len(jsonl) == 4
    first = jsonl.trajectories[0]
    assert (first.id, first.task, first.quality_label, first.fps, first.frames_shape) == \
        ("traj_0", "task 0", "successful", 5.0, (10, 8, 8, 3))
    assert [t.final_progress for t in jsonl.trajectories] == [1.0, 0.4, 0.0, 1.0]
    assert jsonl.by_id("traj_1").num_frames == 11
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "table"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:3]),
                          "test": datasets.Dataset.from_list(rows[3:])}).save_to_disk(str(tmp_path / "split"))
    for table in ("table", "split"):
        assert same_records(open_store(tmp_path, table=table).trajectories, jsonl.trajectories)
    # without trajectories.jsonl, the one datasets folder under the store is the table
    (tmp_path / "trajectories.jsonl").unlink()
    shutil.rmtree(tmp_path / "split")
    assert same_records(open_store(tmp_path).trajectories, jsonl.trajectories)


def test_defaults_and_shapes_from_npz_headers(tmp_path: Path) -> None:
    rows, _ = write_npz_store(tmp_path, n=2, shapes=False)
    for row in rows:
        del row["id"], row["data_source"], row["fps"]
    write_jsonl(tmp_path / "trajectories.jsonl", rows)
    store = open_store(tmp_path, fps=7.0)
    t = store.trajectories[1]
    assert (t.id, t.data_source, t.fps, t.num_frames, t.frames_shape, t.row) == \
        ("frames/traj_1.npz", tmp_path.name, 7.0, 11, (11, 8, 8, 3), 2)
    assert store.fingerprint["table"]["path"].endswith("trajectories.jsonl")


# -- frames --------------------------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True], ids=["savez", "savez_compressed"])
def test_frames_in_any_order(tmp_path: Path, compressed: bool) -> None:
    _, arrays = write_npz_store(tmp_path, compressed=compressed)
    store = open_store(tmp_path)
    for indices in ([0], [9, 0, 9, 3, 3, 1], [5, 4, 3, 2, 1, 0], list(range(10))):
        for trajectory in store.trajectories:
            got = store.frames(trajectory, indices)
            assert got.dtype == np.uint8 and got.shape == (len(indices), 8, 8, 3)
            np.testing.assert_array_equal(got, arrays[trajectory.id][indices])
    # a copy in another process (pickled) opens its own files
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.frames(clone.by_id("traj_2"), [11, 0]), arrays["traj_2"][[11, 0]])


class CountingFile:
    """A file whose reads are counted (the bytes the store pulls from disk)."""

    def __init__(self, file, counter: list[int]) -> None:
        self._file, self._counter = file, counter

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self._counter[0] += len(data)
        return data

    def __getattr__(self, name: str):
        return getattr(self._file, name)


def test_reads_only_the_asked_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame_bytes = 32 * 32 * 3
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, size=(200, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "stored.npz", frames=array)
    np.savez_compressed(tmp_path / "deflated.npz", frames=array)
    write_jsonl(tmp_path / "trajectories.jsonl", [
        {"npz_path": name, "task": "t", "quality_label": "successful"} for name in ("stored.npz", "deflated.npz")])
    store = open_store(tmp_path)
    stored, deflated = store.trajectories

    # stored members: real seeks in the file, even to the last frames
    counter = [0]
    real_open = open
    monkeypatch.setattr(npz_frames, "open", lambda *a, **k: CountingFile(real_open(*a, **k), counter),
                        raising=False)
    np.testing.assert_array_equal(store.frames(stored, [190, 199, 190]), array[[190, 199, 190]])
    assert counter[0] < 2 * frame_bytes + 4096, counter[0]  # of a 1.2 MB file

    # deflated members decompress forward once, in increasing order, only as far as needed
    counter[0], decompressed = 0, [0]
    real_read = zipfile.ZipExtFile.read

    def counting_read(self, n=-1):
        data = real_read(self, n)
        decompressed[0] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counting_read)
    np.testing.assert_array_equal(store.frames(deflated, [3, 1, 3, 0, 1]), array[[3, 1, 3, 0, 1]])
    assert decompressed[0] <= 4 * frame_bytes + 256, decompressed[0]
    assert counter[0] < 8 * frame_bytes, counter[0]  # from disk: about as much, compressed (random pixels)


def test_store_pickles_without_open_files(tmp_path: Path) -> None:
    write_npz_store(tmp_path, n=30)
    store = open_store(tmp_path)
    store.frames(store.trajectories[0], [0])  # opens a file
    data = pickle.dumps(store)
    assert len(data) < 4000 and b"BufferedReader" not in data
    clone = pickle.loads(data)
    assert same_records(clone.trajectories, store.trajectories) and clone.fingerprint == store.fingerprint


# -- bad input -------------------------------------------------------------------------------------


def error(call) -> str:
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_bad_table_rows(tmp_path: Path) -> None:
    rows, _ = write_npz_store(tmp_path, n=2)
    table = tmp_path / "trajectories.jsonl"
    good = json.dumps(rows[0])
    cases = [
        ({**rows[1], "task": None}, "missing required field 'task'"),
        ({k: v for k, v in rows[1].items() if k != "npz_path"}, "missing required field 'npz_path'"),
        ({**rows[1], "quality_label": "great"}, "quality_label 'great'"),
        ({**rows[1], "partial_success": 1.5}, "partial_success 1.5"),
        ({**rows[1], "fps": 0}, "fps 0"),
        ({**rows[1], "frames_shape": [10, 8, 8]}, "frames_shape [10, 8, 8]"),
        ({**rows[1], "num_frames": 3}, "num_frames 3"),
        ({**rows[1], "id": "traj_0"}, "id 'traj_0' already used by line 1"),
        ('{"npz_path": "frames/traj_1.npz", "task": ', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ]
    for row, expected in cases:
        write_jsonl(table, [good, "", row])
        message = error(lambda: open_store(tmp_path))
        assert f"{table}, line 3" in message and expected in message, message


def test_bad_datasets_rows(tmp_path: Path) -> None:
    import datasets

    rows, _ = write_npz_store(tmp_path, n=3)
    rows[2]["quality_label"] = "meh"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:1]),
                          "val": datasets.Dataset.from_list(rows[1:])}).save_to_disk(str(tmp_path / "table"))
    message = error(lambda: open_store(tmp_path, table="table"))
    assert f"{tmp_path / 'table'}, split 'val', row 1: quality_label 'meh'" in message
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "state.json").write_text("{")
    assert str(tmp_path / "broken") in error(lambda: open_store(tmp_path, table="broken"))
    assert "no such trajectory table" in error(lambda: open_store(tmp_path, table="nope.jsonl"))


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_bad_npz_files(tmp_path: Path) -> None:
    rows, _ = write_npz_store(tmp_path, n=1, shapes=False)
    table = tmp_path / "trajectories.jsonl"
    good = npz_bytes(frames=np.zeros((4, 8, 8, 3), np.uint8))
    # a frames.npy whose header promises 10 frames but holds 5
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10, 8, 8, 3)})
    truncated_member = io.BytesIO()
    with zipfile.ZipFile(truncated_member, "w") as archive:
        archive.writestr("frames.npy", header.getvalue() + bytes(5 * 8 * 8 * 3))
    cases = [
        (None, "no such .npz file"),
        (b"not a zip at all", "not a readable .npz (zip) file"),
        (good[: len(good) // 2], "not a readable .npz (zip) file"),
        (npz_bytes(images=np.zeros((4, 8, 8, 3), np.uint8)), "no 'frames' array"),
        (npz_bytes(frames=np.zeros((4, 8, 8), np.uint8)), "'frames' is [4, 8, 8] uint8; expected [T, H, W, 3]"),
        (npz_bytes(frames=np.zeros((4, 8, 8, 4), np.uint8)), "'frames' is [4, 8, 8, 4] uint8"),
        (npz_bytes(frames=np.zeros((4, 8, 8, 3), np.float32)), "'frames' is [4, 8, 8, 3] float32"),
        (truncated_member.getvalue(), "frames.npy is truncated"),
    ]
    npz = tmp_path / rows[0]["npz_path"]
    for content, expected in cases:
        write_jsonl(table, [rows[0]])
        npz.unlink(missing_ok=True)
        if content is not None:
            npz.write_bytes(content)
        # shapes read from the header: reported when the store opens
        message = error(lambda: open_store(tmp_path))
        assert str(npz) in message and f"{table}, line 1" in message and expected in message, message
        # shapes given in the table: the file is read with the frames
        if content is not None:
            write_jsonl(table, [{**rows[0], "frames_shape": [4, 8, 8, 3]}])
            store = open_store(tmp_path)
            message = error(lambda s=store: s.frames(s.trajectories[0], [0]))
            assert str(npz) in message and f"{table}, line 1" in message and expected in message, message


def test_frame_index_past_the_end_and_shape_mismatch(tmp_path: Path) -> None:
    rows, _ = write_npz_store(tmp_path, n=2)
    store = open_store(tmp_path)
    message = error(lambda: store.frames(store.trajectories[1], [0, 11]))
    assert "frames/traj_1.npz" in message and "line 2" in message and "frame index 11" in message \
        and "T=11" in message, message
    assert "frame index -1" in error(lambda: store.frames(store.trajectories[1], [-1]))
    rows[0]["frames_shape"], rows[0]["num_frames"] = [10, 8, 9, 3], 10
    write_jsonl(tmp_path / "trajectories.jsonl", rows)
    store = open_store(tmp_path)
    message = error(lambda: store.frames(store.trajectories[0], [0]))
    assert "traj_0.npz" in message and "line 1" in message and "frames_shape [10, 8, 9, 3]" in message, message


# -- LeRobot ---------------------------------------------------------------------------------------


def test_lerobot_v3_and_v2_match_the_npz_store(tmp_path: Path) -> None:
    from qvl.lerobot import Recording, write_dataset
    from qvl_vqa.config import SyntheticConfig
    from qvl_vqa.synthetic import CAMERA, write_store

    spec = SyntheticConfig(tasks=2, trajectories_per_task=5, min_frames=4, max_frames=6, size=32,
                           quality_mix=[0.4, 0.4, 0.2], lerobot_copy=True)
    write_store(tmp_path / "store", spec, seed=3)
    npz = open_store(tmp_path / "store")
    recordings = [Recording(task=t.task, frames={CAMERA: list(npz.frames(t, range(t.num_frames)))},
                            columns={"progress": [t.progress(i) for i in range(t.num_frames)],
                                     "other": np.zeros(t.num_frames)})
                  for t in npz.trajectories]
    write_dataset(tmp_path / "v21", recordings, spec.fps, version="v2.1")
    v3, v21 = open_store(tmp_path / "store" / "lerobot"), open_store(tmp_path / "v21")
    for store in (v3, v21):
        assert [t.id for t in store.trajectories] == [f"episode_{i}" for i in range(10)]
        for a, b in zip(npz.trajectories, store.trajectories):
            assert (a.task, a.quality_label, a.num_frames, a.frames_shape, a.fps) == \
                (b.task, b.quality_label, b.num_frames, b.frames_shape, b.fps)
            assert abs(a.final_progress - b.final_progress) < 1e-6
        b = store.trajectories[7]
        decoded = store.frames(b, [3, 0, 3, 1])
        assert decoded.shape == (4, 32, 32, 3) and decoded.dtype == np.uint8
        written = npz.frames(npz.trajectories[7], [3, 0, 3, 1]).astype(float)
        assert np.abs(decoded - written).mean() < 10
        message = error(lambda s=store, b=b: s.frames(b, [b.num_frames]))
        assert f"frame index {b.num_frames}" in message and f"T={b.num_frames}" in message
        clone = pickle.loads(pickle.dumps(store))
        np.testing.assert_array_equal(clone.frames(clone.trajectories[7], [3, 0, 3, 1]), decoded)
    assert v21.trajectories[0].data_source == "v21"
    assert v3.fingerprint != v21.fingerprint
    # no progress column: every episode is successful; an unknown camera names the file
    no_progress = [Recording(task=r.task, frames=r.frames) for r in recordings[:3]]
    write_dataset(tmp_path / "plain", no_progress, spec.fps, version="v3.0")
    plain = open_store(tmp_path / "plain", data_format="lerobot", camera_key=CAMERA)
    assert [t.quality_label for t in plain.trajectories] == ["successful"] * 3
    assert "info.json" in error(lambda: open_store(tmp_path / "plain", camera_key="observation.images.top"))
