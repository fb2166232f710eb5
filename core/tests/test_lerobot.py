"""qvl.lerobot: LeRobot v3.0 / v2.1 written and read back, stats, appending, and errors that name the file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from qvl import UserError
from qvl.build import MARKER, build_directory, read_marker
from qvl.lerobot import (
    LeRobotDataset,
    LeRobotFormatError,
    Recording,
    append_episodes,
    encode_video,
    write_dataset,
)

CAMERAS = ("observation.images.cam_high", "observation.images.cam_left_wrist")


def flat_frames(episode: int, length: int, camera_offset: int) -> list:
    """Frames whose grey level encodes (episode, frame, camera): a decoded frame can be identified."""
    return [np.full((48, 64, 3), 20 + 30 * episode + 5 * frame + camera_offset, np.uint8) for frame in range(length)]


def recording(episode: int, length: int = 6) -> Recording:
    """Episode ``episode``: two cameras, a one-hot label, a float action, an int column."""
    frames = {camera: flat_frames(episode, length, 2 * i) for i, camera in enumerate(CAMERAS)}
    bins = [[1.0 if k == frame // 2 else 0.0 for k in range(3)] for frame in range(length)]
    action = [[0.1 * episode + 0.01 * frame, -0.5 * frame] for frame in range(length)]
    return Recording(task=f"task {episode % 2}", frames=frames,
                     columns={"reward_bins": bins, "action": action, "success": [episode % 2] * length})


def grey(image) -> float:
    return float(np.asarray(image).mean())


def write(root: Path, episodes: range, **kwargs) -> Path:
    """A data set as callers make it: through build_directory (temporary folder, marker, rename)."""
    recordings = [recording(e) for e in episodes]
    return build_directory(root, lambda out: write_dataset(out, recordings, 10, **kwargs), kind="dataset",
                           fingerprint={"episodes": len(recordings)})


def snapshot(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_ino, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


# -- round trip --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_round_trip_frames_within_codec_tolerance_and_columns_exact(tmp_path, version):
    recordings = [recording(e) for e in range(4)]
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version=version, episodes_per_file=3,
                         splits={"train": "0:3", "val": "3:4"})
    source = LeRobotDataset(root)
    assert source.version == version and source.fps == 10 and source.camera_keys == CAMERAS
    assert [e.index for e in source.episodes] == [0, 1, 2, 3] and [e.length for e in source.episodes] == [6] * 4
    assert source.tasks() == {0: "task 0", 1: "task 1"}
    assert source.split_episodes("train") == [0, 1, 2] and source.split_episodes("test") is None
    info = source.info
    assert info["total_episodes"] == 4 and info["total_frames"] == 24 and info["total_tasks"] == 2
    assert info["fps"] == 10 and isinstance(info["fps"], int)  # LeRobot's DatasetInfo.fps is an int
    assert info["features"]["action"] == {"dtype": "float32", "shape": [2], "names": None}
    assert info["features"]["success"]["dtype"] == "int64" and info["features"]["success"]["shape"] == [1]
    assert info["features"][CAMERAS[0]]["shape"] == [48, 64, 3]
    if version == "v3.0":  # episodes 0-2 share file-000, episode 3 is alone in file-001
        assert {e.data_path.name for e in source.episodes} == {"file-000.parquet", "file-001.parquet"}
        assert source.episodes[2].videos[CAMERAS[0]].from_timestamp == pytest.approx(1.2)
    for episode in source.episodes:
        rows = source.frame_table(episode, ["timestamp", "index", "task_index", "reward_bins", "action", "success"])
        written = recordings[episode.index].columns
        assert [r["frame_index"] for r in rows] == list(range(6))
        assert [r["index"] for r in rows] == list(range(6 * episode.index, 6 * episode.index + 6))
        assert [r["reward_bins"] for r in rows] == written["reward_bins"]
        assert [r["action"] for r in rows] == np.asarray(written["action"], np.float32).tolist()
        assert [r["success"] for r in rows] == written["success"]
        assert {r["task_index"] for r in rows} == {episode.index % 2}
        for row in rows[::5]:
            images = [source.image(episode, camera, row["timestamp"]) for camera in CAMERAS]
            assert [grey(im) for im in images] == pytest.approx(
                [20 + 30 * episode.index + 5 * row["frame_index"] + 2 * i for i in range(2)], abs=2)
    source.close()


def test_textured_frames_decode_close_to_what_was_written(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(6, 8, 3)).repeat(8, axis=0).repeat(8, axis=1).astype(np.uint8)
    frames = [np.roll(base, 8 * i, axis=1) for i in range(5)]
    root = write_dataset(tmp_path / "ds", [Recording(task="t", frames={"cam": frames})], fps=5)
    source = LeRobotDataset(root, ["cam"])
    for i, frame in enumerate(frames):
        decoded = np.asarray(source.image(0, "cam", i / 5)).astype(int)
        assert decoded.shape == frame.shape and np.abs(decoded - frame).mean() < 6


# -- tasks.parquet ---------------------------------------------------------------------------


def test_tasks_parquet_has_the_task_text_as_pandas_index_as_lerobot_writes_it(tmp_path):
    import pyarrow.parquet as pq

    root = write_dataset(tmp_path / "ds", [recording(e) for e in range(3)], fps=10)
    table = pq.read_table(root / "meta" / "tasks.parquet")
    assert table.column_names == ["task_index", "task"]
    assert table.to_pylist() == [{"task_index": 0, "task": "task 0"}, {"task_index": 1, "task": "task 1"}]
    pandas_meta = json.loads(table.schema.metadata[b"pandas"])
    assert pandas_meta["index_columns"] == ["task"]
    assert [c["name"] for c in pandas_meta["columns"]] == ["task_index", "task"]


@pytest.mark.parametrize("task_column", ["task", "__index_level_0__"])
def test_older_tasks_parquet_layouts_read_the_same(tmp_path, task_column):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = write_dataset(tmp_path / "ds", [recording(e) for e in range(3)], fps=10)
    pq.write_table(pa.table({task_column: ["task 0", "task 1"], "task_index": [0, 1]}),
                   root / "meta" / "tasks.parquet")
    assert LeRobotDataset(root).tasks() == {0: "task 0", 1: "task 1"}


# -- stats.json ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_stats_json_matches_numpy_on_the_written_data(tmp_path, version):
    import pyarrow as pa
    import pyarrow.parquet as pq

    recordings = [recording(e, length=4 + e) for e in range(3)]
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version=version)
    stats = json.loads((root / "meta" / "stats.json").read_text())
    data = pa.concat_tables([pq.read_table(p) for p in sorted((root / "data").rglob("*.parquet"))])
    for name in ("timestamp", "frame_index", "episode_index", "index", "task_index", "reward_bins", "action",
                 "success"):
        values = np.asarray(data.column(name).to_pylist(), np.float64).reshape(len(data), -1)
        assert stats[name]["count"] == [15]
        for stat, expected in (("min", values.min(0)), ("max", values.max(0)), ("mean", values.mean(0)),
                               ("std", values.std(0))):
            assert np.asarray(stats[name][stat]).shape == expected.shape, (name, stat)
            np.testing.assert_allclose(stats[name][stat], expected, rtol=1e-9, atol=1e-12, err_msg=f"{name} {stat}")
    for camera in CAMERAS:  # per channel, in [0, 1], shape [3, 1, 1], of the frames as given
        pixels = np.concatenate([np.stack(r.frames[camera]) for r in recordings]).reshape(-1, 3) / 255.0
        assert stats[camera]["count"] == [15]
        for stat, expected in (("min", pixels.min(0)), ("max", pixels.max(0)), ("mean", pixels.mean(0)),
                               ("std", pixels.std(0))):
            assert np.asarray(stats[camera][stat]).shape == (3, 1, 1)
            np.testing.assert_allclose(np.asarray(stats[camera][stat]).reshape(3), expected, rtol=1e-9, atol=1e-12)
    if version == "v2.1":  # per-episode stats, as LeRobot v2.1 keeps them
        lines = (root / "meta" / "episodes_stats.jsonl").read_text().splitlines()
        assert [json.loads(line)["episode_index"] for line in lines] == [0, 1, 2]
        assert json.loads(lines[2])["stats"]["frame_index"]["max"] == [5.0]
    else:
        rows = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
        assert rows[2]["stats/frame_index/max"] == [5.0] and rows[1]["stats/action/count"] == [5]


# -- append_episodes -------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_append_episodes_adds_new_episodes_and_leaves_the_old_ones_unchanged(tmp_path, version):
    root = write(tmp_path / "ds", range(3), version=version, episodes_per_file=2)
    before = snapshot(root)
    old_frames = [grey(LeRobotDataset(root).image(e, CAMERAS[1], 0.3)) for e in range(3)]
    extra = [recording(3), recording(4), Recording(task="a new task", frames=recording(5).frames,
                                                   columns=recording(5).columns)]
    assert append_episodes(root, extra, episodes_per_file=2) == root

    source = LeRobotDataset(root)
    assert [e.index for e in source.episodes] == [0, 1, 2, 3, 4, 5]
    assert source.info["total_episodes"] == 6 and source.info["total_frames"] == 36
    assert source.info["total_tasks"] == 3 and source.info["splits"] == {"train": "0:6"}
    assert source.tasks() == {0: "task 0", 1: "task 1", 2: "a new task"}
    for episode in source.episodes[3:]:
        rows = source.frame_table(episode, ["index", "task_index", "action"])
        assert [r["index"] for r in rows] == list(range(6 * episode.index, 6 * episode.index + 6))
        assert {r["task_index"] for r in rows} == {2 if episode.index == 5 else episode.index % 2}
        assert [r["action"] for r in rows] == np.asarray(recording(episode.index).columns["action"],
                                                         np.float32).tolist()
        assert grey(source.image(episode, CAMERAS[0], 0.4)) == pytest.approx(20 + 30 * episode.index + 20, abs=2)
    assert [grey(source.image(e, CAMERAS[1], 0.3)) for e in range(3)] == old_frames
    after = snapshot(root)
    for name, (_, content) in before.items():  # data and video files are the same (linked) files
        if name.startswith(("data/", "videos/")):
            assert after[name] == before[name]
    assert len([n for n in after if n.startswith("data/")]) == len([n for n in before if n.startswith("data/")]) + \
        (2 if version == "v3.0" else 3)
    if version == "v3.0":
        assert sorted(n for n in after if n.startswith("meta/episodes/")) == [
            "meta/episodes/chunk-000/file-000.parquet", "meta/episodes/chunk-000/file-001.parquet"]
    assert read_marker(root)["appended_episodes"] == "3:6"
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "ds"]  # no temporary or set-aside one

    # the merged statistics are those of the six episodes written at once
    whole = json.loads((write(tmp_path / "whole", range(6), version=version) / "meta/stats.json").read_text())
    merged = json.loads((root / "meta" / "stats.json").read_text())
    for renamed in ("task_index",):  # the new task has index 2 here, 0 in the one-go set
        whole.pop(renamed), merged.pop(renamed)
    assert merged.keys() == whole.keys()
    for name in merged:
        for stat in ("min", "max", "mean", "std", "count"):
            np.testing.assert_allclose(merged[name][stat], whole[name][stat], rtol=1e-9, atol=1e-12)


def test_append_keeps_other_splits_and_takes_new_ones(tmp_path):
    root = write(tmp_path / "ds", range(4), splits={"train": "0:3", "val": "3:4"})
    append_episodes(root, [recording(4)])
    assert LeRobotDataset(root).info["splits"] == {"train": "0:3", "val": "3:4"}
    append_episodes(root, [recording(5)], splits={"train": "0:4", "val": "4:6"})
    assert LeRobotDataset(root).split_episodes("val") == [4, 5]


def test_append_refuses_a_folder_qvl_did_not_write_and_leaves_it_untouched(tmp_path):
    root = write_dataset(tmp_path / "theirs", [recording(e) for e in range(2)], fps=10)
    before = snapshot(root)
    with pytest.raises(UserError, match=rf"theirs: not a data set qvl wrote \(no {MARKER}\).*nothing was changed"):
        append_episodes(root, [recording(2)])
    assert snapshot(root) == before and sorted(p.name for p in tmp_path.iterdir()) == ["theirs"]


def test_append_with_other_features_names_the_recording_and_leaves_the_data_set_untouched(tmp_path):
    root = write(tmp_path / "ds", range(2))
    before = snapshot(root)
    other = recording(2)
    wrong = Recording(task="t", frames=other.frames, columns={**other.columns, "action": [[0.0] * 3] * 6})
    with pytest.raises(LeRobotFormatError, match=r"recording 0 \(episode 2\): feature 'action' is \('float32', "
                                                 r"\(3,\)\); .*info\.json has \('float32', \(2,\)\)"):
        append_episodes(root, [wrong])
    assert snapshot(root) == before


# -- writer input errors -------------------------------------------------------------------------


def test_writer_refuses_a_non_empty_folder_and_inconsistent_recordings(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"full: expected an empty folder"):
        write_dataset(tmp_path / "full", [recording(0)], fps=10)
    assert (tmp_path / "full" / "notes.txt").read_text() == "mine"
    short = recording(1)
    short = Recording(task="t", frames={**short.frames, CAMERAS[1]: short.frames[CAMERAS[1]][:4]},
                      columns=short.columns)
    with pytest.raises(LeRobotFormatError, match=r"recording 1 \(episode 1\): camera 'observation\.images\."
                                                 r"cam_left_wrist' has 4 frames, expected 6"):
        write_dataset(tmp_path / "a", [recording(0), short], fps=10)
    odd = Recording(task="t", frames={"cam": [np.zeros((5, 8, 3), np.uint8)] * 2})
    with pytest.raises(LeRobotFormatError, match=r"file-000\.mp4: frames are 8x5; H\.264 \(yuv420p\) needs an even"):
        write_dataset(tmp_path / "b", [odd], fps=10)
    labels = Recording(task="t", frames={"cam": [np.zeros((4, 4, 3), np.uint8)] * 2}, columns={"note": ["a", "b"]})
    with pytest.raises(LeRobotFormatError, match=r"recording 0 \(episode 0\): column 'note' holds <U1 values"):
        write_dataset(tmp_path / "c", [labels], fps=10)


# -- reader input errors: each names the file and what was expected ----------------------------


def test_hand_made_minimal_v21_dataset(tmp_path):
    """Written file by file as the LeRobot v2.1 docs describe it, without qvl's writer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "aloha"
    (root / "meta").mkdir(parents=True)
    info = {
        "codebase_version": "v2.1", "robot_type": "aloha", "total_episodes": 2, "total_frames": 8,
        "total_tasks": 1, "total_videos": 2, "total_chunks": 1, "chunks_size": 1000, "fps": 5,
        "splits": {"train": "0:2"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": {"observation.images.top": {"dtype": "video", "shape": [32, 32, 3]},
                     "reward_bins": {"dtype": "float32", "shape": [2]}},
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "episodes.jsonl").write_text(
        '{"episode_index": 0, "tasks": ["fold the towel"], "length": 4}\n'
        '{"episode_index": 1, "tasks": ["fold the towel"], "length": 4}\n')
    (root / "meta" / "tasks.jsonl").write_text('{"task_index": 0, "task": "fold the towel"}\n')
    for episode in range(2):
        table = pa.table({"timestamp": pa.array([i / 5 for i in range(4)], pa.float32()),
                          "frame_index": list(range(4)), "episode_index": [episode] * 4,
                          "index": list(range(4 * episode, 4 * episode + 4)), "task_index": [0] * 4,
                          "reward_bins": [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]})
        path = root / f"data/chunk-000/episode_{episode:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        encode_video(root / f"videos/chunk-000/observation.images.top/episode_{episode:06d}.mp4",
                     [np.full((32, 32, 3), 40 * episode + 30 * i, np.uint8) for i in range(4)], fps=5)
    source = LeRobotDataset(root, ["observation.images.top"])
    assert source.tasks() == {0: "fold the towel"} and source.stats() is None
    assert [r["reward_bins"] for r in source.frame_table(source.episode(1), ["reward_bins"])][2] == [0.0, 1.0]
    assert grey(source.image(1, "observation.images.top", 0.4)) == pytest.approx(40 + 60, abs=2)


def test_missing_camera_key_names_info_json_and_the_key(tmp_path):
    root = write_dataset(tmp_path / "ds", [recording(0)], fps=10)
    with pytest.raises(LeRobotFormatError, match=r"info\.json: camera key 'observation\.images\.cam_low' is not a "
                                                 r"video or image feature of this data set; cameras: "):
        LeRobotDataset(root, ["observation.images.cam_low"])


def test_missing_and_truncated_videos_name_the_episode_camera_and_file(tmp_path):
    root = write_dataset(tmp_path / "v2", [recording(e) for e in range(3)], fps=10, version="v2.1")
    (root / "videos/chunk-000/observation.images.cam_left_wrist/episode_000002.mp4").unlink()
    with pytest.raises(LeRobotFormatError, match=r"episode 2, camera 'observation\.images\.cam_left_wrist', "
                                                 r"t=0\.000 s: .*episode_000002\.mp4: missing video file"):
        LeRobotDataset(root).image(2, CAMERAS[1], 0.0)
    root = write_dataset(tmp_path / "v3", [recording(e) for e in range(4)], fps=10)
    video = root / "videos/observation.images.cam_high/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    with pytest.raises(LeRobotFormatError, match=r"episode 3, camera 'observation\.images\.cam_high', t=0\.500 s: "
                                                 r".*file-000\.mp4"):
        LeRobotDataset(root).image(3, CAMERAS[0], 0.5)


def test_missing_column_and_damaged_parquet_name_the_file(tmp_path):
    root = write_dataset(tmp_path / "ds", [recording(0)], fps=10)
    source = LeRobotDataset(root)
    with pytest.raises(LeRobotFormatError, match=r"episode 0: .*file-000\.parquet has no column 'reward'; columns: "):
        source.frame_table(source.episodes[0], ["reward"])
    (root / "meta" / "tasks.parquet").write_bytes(b"not parquet")
    with pytest.raises(LeRobotFormatError, match=r"tasks\.parquet: not a readable parquet file"):
        source.tasks()
    (root / "meta/episodes/chunk-000/file-000.parquet").unlink()
    with pytest.raises(LeRobotFormatError, match=r"meta/episodes: no chunk-\*/file-\*\.parquet episode files"):
        LeRobotDataset(root)


def test_unknown_version_bad_json_bad_jsonl_line_and_bad_split(tmp_path):
    root = write_dataset(tmp_path / "ds", [recording(0)], fps=10, splits={"train": "0-1"})
    with pytest.raises(LeRobotFormatError, match=r"info\.json: splits\.train: expected an episode range 'start:end', "
                                                 r"got '0-1'"):
        LeRobotDataset(root).split_episodes("train")
    info = root / "meta" / "info.json"
    info.write_text(info.read_text().replace('"v3.0"', '"v1.6"'))
    with pytest.raises(LeRobotFormatError, match=r"info\.json: codebase_version 'v1\.6'"):
        LeRobotDataset(root)
    info.write_text('{"fps": 10,\n  oops}')
    with pytest.raises(LeRobotFormatError, match=r"info\.json, line 2: not valid JSON"):
        LeRobotDataset(root)
    v2 = write_dataset(tmp_path / "v2", [recording(0), recording(1)], fps=10, version="v2.1")
    episodes = v2 / "meta" / "episodes.jsonl"
    episodes.write_text(episodes.read_text().splitlines()[0] + '\n{"episode_index": 1, "length": }\n')
    with pytest.raises(LeRobotFormatError, match=r"episodes\.jsonl, line 2: not valid JSON"):
        LeRobotDataset(v2)
    episodes.write_text('{"episode_index": 0}\n')
    with pytest.raises(LeRobotFormatError, match=r"episodes\.jsonl, line 1: expected integer keys 'episode_index' "
                                                 r"and 'length'"):
        LeRobotDataset(v2)
    assert issubclass(LeRobotFormatError, UserError)


def test_import_qvl_and_qvl_lerobot_stay_light():
    code = ("import sys, qvl, qvl.lerobot; heavy = [m for m in ('pyarrow', 'av', 'torch', 'numpy') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert out.stdout.strip() == "[]"


def test_without_the_lerobot_extra_importing_qvl_lerobot_says_what_to_install(tmp_path):
    # pyarrow hidden as if qvl-core were installed without [lerobot]
    code = ("import sys; sys.modules['pyarrow'] = None\n"
            "from qvl.errors import UserError\n"
            "try:\n    import qvl.lerobot\nexcept ImportError as exc:\n"
            "    print(isinstance(exc, UserError), exc.name, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ("True pyarrow qvl.lerobot needs pyarrow, which qvl-core installs with its [lerobot] extra: "
                   "pip install 'qvl-core[lerobot]' (a plugin that uses qvl.lerobot lists 'qvl-core[lerobot]' "
                   "among its dependencies)")


def image_feature_dataset(root: Path, colours: list[list[tuple[int, int, int]]]) -> Path:
    """A v3.0 data set whose camera is an ``image`` feature, laid out as LeRobot writes one with
    ``use_videos=False``: each frame's PNG in the data parquet as ``{"bytes", "path"}``. Episode 0
    carries bytes, episode 1 paths to PNG files (relative to the data set)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from qvl.lerobot import write_tasks_parquet

    camera = "observation.images.top"
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "images").mkdir()
    features = {camera: {"dtype": "image", "shape": [24, 32, 3], "names": ["height", "width", "channel"]},
                **{name: {"dtype": "int64", "shape": [1], "names": None}
                   for name in ("frame_index", "episode_index", "index", "task_index")},
                "timestamp": {"dtype": "float32", "shape": [1], "names": None}}
    (root / "meta" / "info.json").write_text(json.dumps({
        "codebase_version": "v3.0", "fps": 10, "features": features, "total_episodes": len(colours),
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet", "video_path": None,
        "chunks_size": 1000, "splits": {"train": f"0:{len(colours)}"}}))
    write_tasks_parquet(root / "meta" / "tasks.parquet", ["look"])
    rows, episodes, index = [], [], 0
    for episode, frames in enumerate(colours):
        episodes.append({"episode_index": episode, "length": len(frames), "tasks": ["look"],
                         "data/chunk_index": 0, "data/file_index": 0,
                         "dataset_from_index": index, "dataset_to_index": index + len(frames)})
        for number, colour in enumerate(frames):
            buffer = io.BytesIO()
            Image.new("RGB", (32, 24), colour).save(buffer, format="PNG")
            if episode == 0:
                cell = {"bytes": buffer.getvalue(), "path": f"frame_{index:06d}.png"}
            else:
                (root / "images" / f"frame_{index:06d}.png").write_bytes(buffer.getvalue())
                cell = {"bytes": None, "path": f"images/frame_{index:06d}.png"}
            rows.append({camera: cell, "timestamp": number / 10, "frame_index": number, "episode_index": episode,
                         "index": index, "task_index": 0})
            index += 1
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([(camera, image_type), ("timestamp", pa.float32()), ("frame_index", pa.int64()),
                        ("episode_index", pa.int64()), ("index", pa.int64()), ("task_index", pa.int64())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.Table.from_pylist(episodes), root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    return root


def test_image_features_are_cameras_read_from_the_parquet_bytes_or_their_paths(tmp_path):
    from qvl.lerobot import LeRobotDataset, LeRobotFormatError

    colours = [[(250, 0, 0), (0, 250, 0), (0, 0, 250)], [(250, 250, 0), (0, 250, 250)]]
    dataset = LeRobotDataset(image_feature_dataset(tmp_path / "ds", colours))
    assert dataset.camera_keys == ("observation.images.top",) and dataset.video_keys == ()
    assert [e.length for e in dataset.episodes] == [3, 2] and dataset.episodes[0].videos == {}
    for episode, frames in enumerate(colours):
        for number, colour in enumerate(frames):
            image = dataset.image(episode, "observation.images.top", number / 10)
            assert image.mode == "RGB" and image.size == (32, 24)
            assert image.getpixel((16, 12)) == colour  # PNG: exact
    with pytest.raises(LeRobotFormatError, match=r"episode 1, camera 'observation.images.top', frame 5 .*frames 0-1"):
        dataset.image(1, "observation.images.top", 0.5)
    with pytest.raises(LeRobotFormatError, match="is not a video or image feature of this data set; "
                                                 "cameras: observation.images.top"):
        LeRobotDataset(tmp_path / "ds", ["observation.images.wrist"])
    (tmp_path / "ds" / "images" / "frame_000003.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match=r"file-000\.parquet \(episode 1, camera 'observation.images.top', frame 0\)"):
        LeRobotDataset(tmp_path / "ds").image(1, "observation.images.top", 0.0)


def test_a_data_set_named_by_hub_id_is_read_from_the_hugging_face_cache_offline(tmp_path):
    # laid out as huggingface_hub lays out its cache: refs name a commit, snapshots/<commit> hold the files
    repo = tmp_path / "hub" / "datasets--lab--cubes"
    for ref, commit, colour in (("main", "a" * 40, (250, 0, 0)), ("v1.0", "b" * 40, (0, 0, 250))):
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
        image_feature_dataset(repo / "snapshots" / commit, [[colour, colour]])
    code = ("import sys\nfrom qvl.lerobot import LeRobotDataset, hub_dataset\nfrom qvl import UserError\n"
            "for revision in ('', 'v1.0'):\n"
            "    root = hub_dataset('lab/cubes', revision)\n"
            "    print(root.name[:4], LeRobotDataset(root).image(0, 'observation.images.top', 0.1).getpixel((0, 0)))\n"
            "for repo_id in ('lab/absent', 'not an id'):\n"
            "    try:\n        hub_dataset(repo_id)\n    except UserError as exc:\n        print(exc)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert lines[:2] == ["aaaa (250, 0, 0)", "bbbb (0, 0, 250)"]
    assert lines[2].startswith("task.repo_id = 'lab/absent': not in the local Hugging Face cache")
    assert lines[3] == "task.repo_id = 'not an id': expected a hub data set id 'org/name'"
