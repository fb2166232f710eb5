"""The synthetic trajectory store: quality mix, lengths, and progress visible in the pixels."""

from __future__ import annotations

import itertools
import json
import pickle
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from qvl.errors import UserError
from qvl_vqa.config import QUALITY_LABELS, SyntheticConfig
from qvl_vqa.synthetic import (
    CAMERA,
    BLOCK,
    SCENES,
    fingerprint,
    quality_counts,
    store_key,
    synthetic_data,
    write_store,
)
from qvl_vqa.store_formats import open_store

FIELDS = {"id", "task", "quality_label", "partial_success", "data_source", "npz_path", "fps", "num_frames",
          "frames_shape"}


def block_centre(frame: np.ndarray, colour: tuple[int, int, int]) -> tuple[np.ndarray, int]:
    """The centre (x, y in frame widths) of the pixels of the block's colour, and how many there are."""
    mask = (np.abs(frame.astype(int) - colour) < 45).all(axis=-1)
    ys, xs = np.nonzero(mask)
    size = frame.shape[0]
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5]) / size, int(mask.sum())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    spec = SyntheticConfig(tasks=6, trajectories_per_task=10, min_frames=6, max_frames=12, size=64,
                           quality_mix=[0.5, 0.3, 0.2], lerobot_copy=False)
    root = tmp_path_factory.mktemp("synthetic")
    write_store(root, spec, seed=0)
    return spec, root, open_store(root)


def test_table_follows_the_spec(store) -> None:
    spec, root, _ = store
    rows = [json.loads(line) for line in (root / "trajectories.jsonl").read_text().splitlines()]
    assert len(rows) == 60 and all(set(row) == FIELDS for row in rows)
    assert len({row["id"] for row in rows}) == 60
    assert sorted({row["task"] for row in rows}) == sorted(scene.task for scene in SCENES)
    for scene in SCENES:
        per_label = Counter(row["quality_label"] for row in rows if row["task"] == scene.task)
        assert [per_label[label] for label in QUALITY_LABELS] == [5, 3, 2]
    for row in rows:
        partial = row["partial_success"]
        assert {"successful": partial == 1.0, "failure": partial == 0.0,
                "suboptimal": 0.3 <= partial <= 0.7}[row["quality_label"]]
        assert 6 <= row["num_frames"] <= 12 and row["frames_shape"] == [row["num_frames"], 64, 64, 3]
        assert row["data_source"] == "synthetic" and row["fps"] == spec.fps
    assert len({row["num_frames"] for row in rows}) > 3
    assert len({row["partial_success"] for row in rows if row["quality_label"] == "suboptimal"}) > 10
    assert not (root / "lerobot").exists()


def test_quality_counts_round_by_largest_remainder() -> None:
    assert quality_counts(30, [0.5, 0.3, 0.2]) == [15, 9, 6]
    assert quality_counts(7, [0.5, 0.3, 0.2]) == [4, 2, 1]
    assert quality_counts(4, [1, 1, 1]) == [2, 1, 1]
    assert quality_counts(5, [1, 0, 0]) == [5, 0, 0]


def test_pixels_show_progress(store) -> None:
    _, _, opened = store
    scenes = {scene.task: scene for scene in SCENES}
    for trajectory in opened.trajectories:
        scene = scenes[trajectory.task]
        frames = opened.frames(trajectory, range(trajectory.num_frames))
        goal = np.asarray(scene.goal)
        distances = []
        for frame in frames:
            centre, pixels = block_centre(frame, scene.block)
            # one block of the coloured fill inside its 1 px border, always whole
            assert (2 * BLOCK * 64 - 3) ** 2 <= pixels <= (2 * BLOCK * 64) ** 2, (trajectory.id, pixels)
            distances.append(np.linalg.norm(centre - goal))
        # the block covers final_progress of its way to the goal, and moves towards it steadily
        reached = 1 - distances[-1] / distances[0]
        assert abs(reached - trajectory.final_progress) < 0.08, (trajectory.id, reached, trajectory.final_progress)
        if trajectory.quality_label != "failure":
            assert all(b < a + 0.02 for a, b in itertools.pairwise(distances)), trajectory.id
        else:
            assert max(distances) - min(distances) < 0.05, trajectory.id


def test_nuisances_vary_and_seeds_repeat(store, tmp_path: Path) -> None:
    spec, root, opened = store
    firsts = [opened.frames(t, [0])[0] for t in opened.trajectories[:10]]  # one task
    corners = {tuple(f[:3, :3].reshape(-1, 3).mean(axis=0).round()) for f in firsts}
    assert len(corners) == 10  # background shades differ
    again = tmp_path / "again"
    write_store(again, spec, seed=0)
    assert (again / "trajectories.jsonl").read_text() == (root / "trajectories.jsonl").read_text()
    np.testing.assert_array_equal(np.load(again / "frames" / "task2_004.npz")["frames"],
                                  np.load(root / "frames" / "task2_004.npz")["frames"])
    write_store(tmp_path / "other", spec, seed=1)
    assert (tmp_path / "other" / "trajectories.jsonl").read_text() != (root / "trajectories.jsonl").read_text()


def test_lerobot_copy_and_build_once(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from qvl.build import read_marker, write_synthetic

    spec = SyntheticConfig(tasks=2, trajectories_per_task=3, min_frames=4, max_frames=5, size=32)
    data = synthetic_data(spec, 7)
    root = write_synthetic(tmp_path / "store", data)
    assert read_marker(root)["fingerprint"] == fingerprint(spec, 7)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "6 synthetic trajectories (2 successful, 2 suboptimal, 2 failure) of 2 tasks" in line
    info = json.loads((root / "lerobot" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 6 and CAMERA in info["features"] and "progress" in info["features"]
    npz, lerobot = open_store(root), open_store(root / "lerobot")
    assert [(t.task, t.quality_label, t.num_frames) for t in npz.trajectories] == \
        [(t.task, t.quality_label, t.num_frames) for t in lerobot.trajectories]
    # every setting and the seed key the store
    keys = {store_key(spec, 7), store_key(spec, 8), store_key(SyntheticConfig(tasks=2, trajectories_per_task=3,
                                                                                min_frames=4, max_frames=5, size=32,
                                                                                fps=5.0), 7)}
    assert len(keys) == 3 and data.key == store_key(spec, 7)


def test_default_store_pickles_small(tmp_path: Path) -> None:
    write_store(tmp_path, SyntheticConfig(lerobot_copy=False), seed=0)
    opened = open_store(tmp_path)
    assert len(opened) == 120 and len(pickle.dumps(opened)) < 10_000


def test_bad_specs() -> None:
    for spec, expected in [
        (SyntheticConfig(min_frames=10, max_frames=8), "min_frames 10, max_frames 8"),
        (SyntheticConfig(quality_mix=[1.0, 0.0]), "quality_mix [1.0, 0.0]"),
        (SyntheticConfig(size=63), "size 63"),
    ]:
        with pytest.raises(UserError, match="task.synthetic") as caught:
            write_store(Path("/nonexistent/never-written"), spec, seed=0)
        assert expected in str(caught.value)
