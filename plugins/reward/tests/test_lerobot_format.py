import json

import numpy as np
import pytest

from qvl_reward.frames import RewardFrames, episodes_of_split
from qvl_reward.lerobot_format import LeRobotDataset, LeRobotFormatError
from qvl_reward.lerobot_writer import encode_video, write_dataset

from .conftest import CAMERAS


def grey(image):
    return float(np.asarray(image).mean())


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_written_dataset_reads_back_with_the_right_frames_tasks_and_labels(tmp_path, recordings, version):
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version=version, episodes_per_file=3,
                         splits={"train": "0:3", "val": "3:4"})
    source = LeRobotDataset(root, CAMERAS)
    assert source.version == version and source.fps == 10
    assert [e.index for e in source.episodes] == [0, 1, 2, 3]
    assert source.tasks() == {0: "task 0", 1: "task 1"}
    if version == "v3.0":  # episodes 0-2 share file-000, episode 3 is alone in file-001
        assert {e.data_path.name for e in source.episodes} == {"file-000.parquet", "file-001.parquet"}
        assert source.episodes[2].videos[CAMERAS[0]].from_timestamp == pytest.approx(1.2)
    frames = RewardFrames(source, episodes_of_split(source, "train", 0.2, {}), "reward_bins", "Task: {task}")
    assert len(frames) == 18 and frames.labels == [0, 0, 1, 1, 2, 2] * 3
    for index in (0, 7, 17):  # episode 0 frame 0, episode 1 frame 1, episode 2 frame 5
        sample = frames[index]
        episode, frame = divmod(index, 6)
        assert sample["text"] == f"Task: task {episode % 2}"
        assert [grey(im) for im in sample["images"]] == pytest.approx(
            [20 + 30 * episode + 5 * frame + 2 * i for i in range(3)], abs=2)
    val = RewardFrames(source, episodes_of_split(source, "val", 0.2, {}), "reward_bins", "{task}")
    assert {s["episode"] for s in val} == {3} and grey(val[5]["images"][0]) == pytest.approx(20 + 90 + 25, abs=2)


def test_hand_made_minimal_v21_dataset(tmp_path):
    """Written file by file as the LeRobot v2.1 docs describe it, without the plugin's writer."""
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
    # no val split in info.json: the last 20% of train episodes (at least one) are held out
    assert episodes_of_split(source, "train", 0.2, {}) == [0]
    assert episodes_of_split(source, "val", 0.2, {}) == [1]
    frames = RewardFrames(source, [1], "reward_bins", "Task: {task}")
    assert frames.labels == [0, 0, 1, 0]  # the all-zero last row is class 0
    assert frames[2]["text"] == "Task: fold the towel"
    assert grey(frames[2]["images"][0]) == pytest.approx(40 + 60, abs=2)


def test_missing_camera_key_names_info_json_and_the_key(tmp_path, recordings):
    root = write_dataset(tmp_path / "ds", recordings, fps=10)
    with pytest.raises(LeRobotFormatError, match=r"info\.json: camera key 'observation\.images\.cam_low' "
                                                 r"\(task\.camera_keys\) is not a video feature"):
        LeRobotDataset(root, ["observation.images.cam_low"])


def test_missing_video_file_names_episode_file_and_camera(tmp_path, recordings):
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version="v2.1")
    video = root / "videos/chunk-000/observation.images.cam_left_wrist/episode_000002.mp4"
    video.unlink()
    frames = RewardFrames(LeRobotDataset(root, CAMERAS), [2], "reward_bins", "{task}")
    with pytest.raises(LeRobotFormatError, match=r"episode 2, frame 0, camera 'observation\.images\.cam_left_wrist'"
                                                 r": .*episode_000002\.mp4: missing video file"):
        frames[0]


def test_truncated_mp4_names_episode_file_and_camera(tmp_path, recordings):
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version="v3.0")
    video = root / "videos/observation.images.cam_high/chunk-000/file-000.mp4"
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    frames = RewardFrames(LeRobotDataset(root, CAMERAS), [3], "reward_bins", "{task}")
    with pytest.raises(LeRobotFormatError, match=r"episode 3, frame 5, camera 'observation\.images\.cam_high': "
                                                 r".*file-000\.mp4"):
        frames[5]


def test_parquet_without_the_label_column_names_episode_file_and_column(tmp_path, recordings):
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version="v3.0")
    with pytest.raises(LeRobotFormatError, match=r"episode 0: .*file-000\.parquet has no column 'success'; columns: "):
        RewardFrames(LeRobotDataset(root, CAMERAS), [0], "success", "{task}")


def test_unknown_version_and_bad_info_json(tmp_path, recordings):
    root = write_dataset(tmp_path / "ds", recordings, fps=10)
    info = root / "meta" / "info.json"
    info.write_text(info.read_text().replace('"v3.0"', '"v1.6"'))
    with pytest.raises(LeRobotFormatError, match=r"info\.json: codebase_version 'v1\.6'"):
        LeRobotDataset(root, CAMERAS)
    info.write_text('{"fps": 10,\n  oops}')
    with pytest.raises(LeRobotFormatError, match=r"info\.json, line 2: not valid JSON"):
        LeRobotDataset(root, CAMERAS)
