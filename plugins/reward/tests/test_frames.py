"""Reward frames over a LeRobot data set: splits, labels, task text, and errors naming episode, frame, camera.

The format itself (reading, writing, stats, appending) is tested in the core: core/tests/test_lerobot.py.
"""

import numpy as np
import pytest

from qvl.lerobot import LeRobotDataset, LeRobotFormatError, Recording, write_dataset

from qvl_reward.frames import RewardFrames, episodes_of_split

from .conftest import CAMERAS


def grey(image):
    return float(np.asarray(image).mean())


@pytest.mark.parametrize("version", ["v3.0", "v2.1"])
def test_frames_of_splits_have_the_right_images_tasks_and_labels(tmp_path, recordings, version):
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version=version, episodes_per_file=3,
                         splits={"train": "0:3", "val": "3:4"})
    source = LeRobotDataset(root, CAMERAS)
    frames = RewardFrames(source, episodes_of_split(source, "train", 0.2, {}), "reward_bins", "Task: {task}")
    assert len(frames) == 18 and frames.labels == [0, 0, 1, 1, 2, 2] * 3 and frames.label_width == 3
    for index in (0, 7, 17):  # episode 0 frame 0, episode 1 frame 1, episode 2 frame 5
        sample = frames[index]
        episode, frame = divmod(index, 6)
        assert sample["text"] == f"Task: task {episode % 2}"
        assert sample["id"] == f"episode-{episode:06d}/frame-{frame:06d}"
        assert [grey(im) for im in sample["images"]] == pytest.approx(
            [20 + 30 * episode + 5 * frame + 2 * i for i in range(3)], abs=2)
    val = RewardFrames(source, episodes_of_split(source, "val", 0.2, {}), "reward_bins", "{task}")
    assert {s["episode"] for s in val} == {3} and grey(val[5]["images"][0]) == pytest.approx(20 + 90 + 25, abs=2)
    strided = RewardFrames(source, [3], "reward_bins", "{task}", stride=2, with_labels=False)
    assert [s["frame"] for s in strided] == [0, 2, 4] and strided.labels == [None] * 3


def test_only_train_split_holds_out_the_last_episodes_and_all_zero_rows_are_class_0(tmp_path):
    frames = [np.full((32, 32, 3), 40, np.uint8)] * 4
    bins = [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    recordings = [Recording(task="fold the towel", frames={"observation.images.top": frames},
                            columns={"reward_bins": bins}) for _ in range(5)]
    root = write_dataset(tmp_path / "ds", recordings, fps=5, version="v2.1")
    source = LeRobotDataset(root, ["observation.images.top"])
    # no val split in info.json: the last 20% of train episodes (at least one) are held out
    assert episodes_of_split(source, "train", 0.2, {}) == [0, 1, 2, 3]
    assert episodes_of_split(source, "val", 0.2, {}) == [4]
    assert episodes_of_split(source, "val", 0.2, {"val": "1:3"}) == [1, 2]
    with pytest.raises(LeRobotFormatError, match=r"split 'val' names episodes \[7\] that meta/ does not list"):
        episodes_of_split(source, "val", 0.2, {"val": "7:8"})
    with pytest.raises(LeRobotFormatError, match=r"task.splits.val: expected an episode range 'start:end', got '1-3'"):
        episodes_of_split(source, "val", 0.2, {"val": "1-3"})
    labelled = RewardFrames(source, [1], "reward_bins", "Task: {task}")
    assert labelled.labels == [0, 0, 1, 0]  # the all-zero last row is class 0
    assert labelled[2]["text"] == "Task: fold the towel"


def _remove(video):
    video.unlink()


def _truncate(video):
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])


@pytest.mark.parametrize("version, video, damage, episode, frame, message", [
    pytest.param("v2.1", "videos/chunk-000/observation.images.cam_left_wrist/episode_000002.mp4", _remove, 2, 0,
                 r"episode 2, frame 0, camera 'observation\.images\.cam_left_wrist': .*episode_000002\.mp4: "
                 r"missing video file", id="missing video file"),
    pytest.param("v3.0", "videos/observation.images.cam_high/chunk-000/file-000.mp4", _truncate, 3, 5,
                 r"episode 3, frame 5, camera 'observation\.images\.cam_high': .*file-000\.mp4", id="truncated mp4"),
])
def test_a_broken_video_names_episode_frame_camera_and_file(tmp_path, recordings, version, video, damage, episode,
                                                            frame, message):
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version=version)
    damage(root / video)
    frames = RewardFrames(LeRobotDataset(root, CAMERAS), [episode], "reward_bins", "{task}")
    with pytest.raises(LeRobotFormatError, match=message):
        frames[frame]


def test_missing_label_column_names_episode_file_and_column(tmp_path, recordings):
    root = write_dataset(tmp_path / "ds", recordings, fps=10, version="v3.0")
    with pytest.raises(LeRobotFormatError, match=r"episode 0: .*file-000\.parquet has no column 'success'; columns: "):
        RewardFrames(LeRobotDataset(root, CAMERAS), [0], "success", "{task}")
