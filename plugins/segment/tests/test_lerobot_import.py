"""prepare: a LeRobot data set with per-frame subtask labels becomes episodes.jsonl with PNG frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qvl.build import read_marker
from qvl.errors import UserError
from qvl.lerobot import Recording, write_dataset
from qvl_segment.episodes import Segment, load_frames, read_episodes
from qvl_segment.lerobot_import import convert_lerobot, kept_frames, label_runs

CAMERAS = ("observation.images.a", "observation.images.b")  # b is 100 grey levels brighter
PICK, POUR, WIPE = "pick the cup", "pour", "wipe the table"
# per-frame labels: None and "" are unlabelled frames; runs of one label are segments
LABELS = [[None, None, PICK, PICK, PICK, POUR, POUR, "", PICK, PICK], ["", WIPE, WIPE, WIPE, WIPE, None]]
SKILLS = [["-", "-", "grasp", "grasp", "lift", "pour", "pour", "-", "grasp", "grasp"], ["-"] + ["wipe"] * 5]
INDICES = [[-1, -1, 0, 0, 0, 1, 1, -1, 0, 0], [-1, 2, 2, 2, 2, -1]]  # the same runs as integers


def grey(episode: int, frame: int) -> int:
    return 40 * episode + 8 * frame


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """Two episodes (10 and 6 frames, 10 fps) whose frames' grey level says which they are, with
    string ``subtask`` and ``skill`` columns added to the frame table, and ``subtask_index``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    recordings = [Recording(task=task, frames={camera: [np.full((16, 16, 3), grey(e, f) + 100 * c, np.uint8)
                                                        for f in range(len(LABELS[e]))]
                                               for c, camera in enumerate(CAMERAS)},
                            columns={"subtask_index": INDICES[e]})
                  for e, task in enumerate(["make tea", "clean up"])]
    root = write_dataset(tmp_path / "lerobot", recordings, fps=10)
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    rows = zip(table["episode_index"].to_pylist(), table["frame_index"].to_pylist())
    episodes, frames = zip(*rows)
    table = table.append_column("subtask", pa.array([LABELS[e][f] for e, f in zip(episodes, frames)], pa.string()))
    table = table.append_column("skill", pa.array([SKILLS[e][f] for e, f in zip(episodes, frames)], pa.string()))
    pq.write_table(table, path)
    return root


def test_string_labels_become_segments_with_the_right_frames(dataset: Path, tmp_path: Path) -> None:
    target = convert_lerobot(dataset, tmp_path / "out", camera_key=None, subtask_column="subtask", skill_column=None,
                             fps=None)
    assert target == tmp_path / "out" and read_marker(target)["kind"] == "dataset"
    first, second = read_episodes(target / "episodes.jsonl")
    assert (first.episode_id, first.task_name, first.init_scene_text, first.num_frames) == \
        ("episode_000000", "make tea", "", 10)
    assert first.segments == (Segment(2, 4, PICK, PICK), Segment(5, 6, POUR, POUR), Segment(8, 9, PICK, PICK))
    assert (second.task_name, second.num_frames, second.segments) == ("clean up", 6, (Segment(1, 4, WIPE, WIPE),))
    assert first.fps == 10.0 and first.frames_paths[3] == target / "frames/episode_000000/000003.png"
    for episode, number in ((first, 0), (second, 1)):  # camera a (the first), every frame in order
        images = load_frames(episode, range(episode.num_frames), None)
        assert [np.asarray(im).mean() for im in images] == \
            pytest.approx([grey(number, f) for f in range(episode.num_frames)], abs=3)


def test_skill_column_camera_and_fps(dataset: Path, tmp_path: Path) -> None:
    target = convert_lerobot(dataset, tmp_path / "out", camera_key=CAMERAS[1], subtask_column="subtask",
                             skill_column="skill", fps=5)
    first, second = read_episodes(target)
    # frames 0, 2, 4, 6, 8 are kept: labels None, pick, pick, pour, pick
    assert first.num_frames == 5 and first.fps == 5.0
    assert first.segments == (Segment(1, 2, PICK, "grasp"), Segment(3, 3, POUR, "pour"), Segment(4, 4, PICK, "grasp"))
    assert second.segments == (Segment(1, 2, WIPE, "wipe"),)  # frames 0, 2, 4 of 6
    images = load_frames(first, range(5), None)
    assert [np.asarray(im).mean() for im in images] == pytest.approx([100 + grey(0, f) for f in (0, 2, 4, 6, 8)],
                                                                     abs=3)


@pytest.mark.parametrize("table", ["subtasks.jsonl", "subtasks.parquet"])
def test_integer_labels_are_named_by_the_subtasks_table(dataset: Path, tmp_path: Path, table: str) -> None:
    names = [{"subtask_index": 0, "subtask": PICK}, {"subtask_index": 1, "subtask": POUR}]
    if table.endswith(".jsonl"):
        (dataset / "meta" / table).write_text("".join(json.dumps(row) + "\n" for row in names))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(names), dataset / "meta" / table)
    first, second = read_episodes(convert_lerobot(dataset, tmp_path / "out", camera_key=None,
                                                  subtask_column="subtask_index", skill_column=None, fps=None))
    assert first.segments == (Segment(2, 4, PICK, PICK), Segment(5, 6, POUR, POUR), Segment(8, 9, PICK, PICK))
    assert second.segments == (Segment(1, 4, "subtask 2", "subtask 2"),)  # not in the table


def test_missing_column_camera_and_a_users_folder(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"lerobot: the frame table \(data/chunk-000/file-000.parquet\) has no column "
                                        r"'subtask_text'; columns: .*subtask_index.*subtask"):
        convert_lerobot(dataset, tmp_path / "out", camera_key=None, subtask_column="subtask_text", skill_column=None,
                        fps=None)
    with pytest.raises(UserError, match="no column 'skills'"):
        convert_lerobot(dataset, tmp_path / "out", camera_key=None, subtask_column="subtask", skill_column="skills",
                        fps=None)
    with pytest.raises(UserError, match="camera key 'observation.images.c' is not a video or image feature"):
        convert_lerobot(dataset, tmp_path / "out", camera_key="observation.images.c", subtask_column="subtask",
                        skill_column=None, fps=None)
    with pytest.raises(UserError, match="fps 20"):
        convert_lerobot(dataset, tmp_path / "out", camera_key=None, subtask_column="subtask", skill_column=None, fps=20)
    assert not (tmp_path / "out").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not written by qvl"):
        convert_lerobot(dataset, mine, camera_key=None, subtask_column="subtask", skill_column=None, fps=None)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_runs_and_kept_frames() -> None:
    assert label_runs([None, "a", "a", None, "a", "b", "b"]) == [(1, 2, "a"), (4, 4, "a"), (5, 6, "b")]
    assert label_runs([]) == [] and label_runs([None]) == []
    assert kept_frames(10, 30, 10) == [0, 3, 6, 9]
    assert kept_frames(10, 25, 10) == [0, 3, 5, 8]  # every 2.5 frames, nearest, halves up
    assert kept_frames(4, 10, None) == [0, 1, 2, 3] and kept_frames(4, 10, 10) == [0, 1, 2, 3]
