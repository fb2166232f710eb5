"""The synthetic pick-and-place episodes: the format, the bounds, reproducibility, skills visible in the pixels."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import attrs
import numpy as np
import pytest
from PIL import Image
from qvl.build import read_marker, write_synthetic
from qvl_segment.episodes import load_frames, read_episodes
from qvl_segment.synthetic import COLOURS, SKILLS, SyntheticSettings, synthetic_data, write_dataset

SETTINGS = SyntheticSettings(episodes=12, min_frames=16, max_frames=40, image_size=[64, 48], max_skills=4,
                             empty_fraction=0.25)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_dataset(root, SETTINGS, seed=0, workers=1)
    return root


def test_the_file_reads_back_within_the_settings(written: Path) -> None:
    episodes = read_episodes(written / "episodes.jsonl")
    assert [e.episode_id for e in episodes] == [f"ep{i:05d}" for i in range(12)]
    assert all(16 <= e.num_frames <= 40 for e in episodes)
    assert len({e.num_frames for e in episodes}) > 3  # lengths vary
    counts = Counter(len(e.segments) for e in episodes)
    assert counts[0] == 3 and max(counts) > 1 and max(counts) <= 4  # exactly empty_fraction have none
    for episode in episodes:
        colour = episode.task_name.removeprefix("pick_and_place_")
        assert colour in COLOURS and colour in episode.init_scene_text
        assert episode.frames_paths[3] == written / f"frames/{episode.episode_id}/000003.png"
        assert Image.open(episode.frames_paths[0]).size == (64, 48)
        skills = [s.skill for s in episode.segments]
        if skills:  # a contiguous run of the chain
            first = SKILLS.index(skills[0])
            assert skills == list(SKILLS[first:first + len(skills)])
        ends = [-1]
        for s in episode.segments:
            assert s.start_frame > ends[-1] and s.end_frame < episode.num_frames  # disjoint, inside
            assert 4 <= s.end_frame - s.start_frame + 1 <= 20
            assert colour in s.action_text and s.action_text.split()[0] == s.skill
            ends.append(s.end_frame)
        if episode.segments:  # drift before the first skill and after the last one
            assert episode.segments[0].start_frame >= 1 and episode.segments[-1].end_frame <= episode.num_frames - 2


def test_same_seed_same_bytes_other_seed_other_data(written: Path, tmp_path: Path) -> None:
    again, other = tmp_path / "again", tmp_path / "other"
    write_dataset(again, SETTINGS, seed=0, workers=2)  # the process pool writes what one process does
    write_dataset(other, SETTINGS, seed=1, workers=1)
    table = (written / "episodes.jsonl").read_text()
    assert (again / "episodes.jsonl").read_text() == table
    assert (other / "episodes.jsonl").read_text() != table
    frames = sorted((written / "frames" / "ep00004").iterdir())
    assert [f.read_bytes() for f in frames] == [f.read_bytes() for f in sorted((again / "frames/ep00004").iterdir())]
    assert (other / "frames/ep00004/000000.png").read_bytes() != frames[0].read_bytes()


def block_centre(image: Image.Image, colour: str) -> np.ndarray:
    """The centre (x, y pixels) of the pixels of the block's colour."""
    pixels = np.asarray(image).astype(int)
    ys, xs = np.nonzero((np.abs(pixels - COLOURS[colour]) < 45).all(axis=-1))
    assert len(xs) > 20, "the block is visible"
    return np.array([xs.mean(), ys.mean()])


def test_each_skill_shows_in_the_pixels(tmp_path: Path) -> None:
    settings = SyntheticSettings(episodes=24, min_frames=30, max_frames=50, max_skills=7, empty_fraction=0.0)
    write_dataset(tmp_path, settings, seed=5, workers=1)
    seen = Counter()
    for episode in read_episodes(tmp_path):
        colour = episode.task_name.removeprefix("pick_and_place_")
        for s in episode.segments:
            before, after = load_frames(episode, [s.start_frame - 1, s.end_frame], None)
            dx, dy = block_centre(after, colour) - block_centre(before, colour)
            if s.skill == "lift":
                assert dy < -5 and abs(dx) < 2, (episode.episode_id, s, dx, dy)  # at least 0.12 of 64 px up
            elif s.skill == "place":
                assert dy > 4 and abs(dx) < 2, (episode.episode_id, s, dx, dy)
            elif s.skill == "move":
                assert abs(dx) > 5 and abs(dy) < 2, (episode.episode_id, s, dx, dy)
                assert np.sign(dx) == (1 if s.action_text.endswith("right") else -1)
            elif s.skill in ("reach", "release", "retreat"):  # the block stays where it is
                assert abs(dx) < 1.5 and abs(dy) < 1.5, (episode.episode_id, s, dx, dy)
            seen[s.skill] += 1
    assert {"lift", "move", "place", "reach", "retreat"} <= set(seen)


def test_video_mode_writes_mp4s_of_the_same_episodes(tmp_path: Path) -> None:
    settings = SyntheticSettings(episodes=3, min_frames=16, max_frames=40, image_size=[64, 48], max_skills=4,
                                 empty_fraction=0.25, video=True, fps=5.0)
    write_dataset(tmp_path / "video", settings, seed=0, workers=1)
    write_dataset(tmp_path / "png", attrs.evolve(settings, video=False), seed=0, workers=1)
    videos = read_episodes(tmp_path / "video")
    pngs = read_episodes(tmp_path / "png")  # the same episodes, as PNG files
    assert sorted(p.name for p in (tmp_path / "video/videos").iterdir()) == ["ep00000.mp4", "ep00001.mp4",
                                                                               "ep00002.mp4"]
    assert not (tmp_path / "video/frames").exists()
    for video, png in zip(videos, pngs):
        assert video.video == tmp_path / "video/videos" / f"{video.episode_id}.mp4" and video.fps == 5.0
        assert video.segments == png.segments
        assert video.num_frames == png.num_frames
        last = png.num_frames - 1
        decoded, original = load_frames(video, [last], None), load_frames(png, [last], None)
        assert np.abs(np.asarray(decoded[0], float) - np.asarray(original[0], float)).mean() < 8


def test_settings_key_the_cached_data_set(tmp_path: Path) -> None:
    small = SyntheticSettings(episodes=2, min_frames=8, max_frames=10, image_size=[32, 32])
    data = synthetic_data(small, seed=0)
    assert data.key != synthetic_data(small, seed=1).key
    assert data.key != synthetic_data(SyntheticSettings(episodes=3, min_frames=8, max_frames=10,
                                                         image_size=[32, 32]), seed=0).key
    root = write_synthetic(tmp_path / "data", data)
    assert read_marker(root)["fingerprint"]["version"] >= 1 and len(read_episodes(root)) == 2
    with pytest.raises(ValueError, match="max_frames"):
        SyntheticSettings(min_frames=20, max_frames=10)
    with pytest.raises(ValueError, match="image_size"):
        SyntheticSettings(image_size=[63, 64])
