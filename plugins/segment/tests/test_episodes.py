"""episodes.jsonl: reading and checking it, sampling frames, mapping segments, loading frames, splits."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from qvl.errors import UserError
from qvl.lerobot.video import encode_video
from qvl_segment.episodes import (
    Episode,
    Segment,
    load_frames,
    read_episodes,
    sample_frame_numbers,
    split_episodes,
    to_original,
    to_sampled,
    video_length,
)


def grey_png(path: Path, level: int, size: tuple[int, int] = (8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (level, level, level)).save(path)


def line(episode_id: str = "ep0", frames: int = 6, **fields) -> dict:
    """A valid line whose frames are frames/<id>/<n>.png (grey level 10 * n)."""
    row = {"episode_id": episode_id, "frames_paths": [f"frames/{episode_id}/{n}.png" for n in range(frames)],
           "task_name": "stack", "init_scene_text": "two blocks",
           "action_config": [{"start_frame": 3, "end_frame": 5, "action_text": "put it down", "skill": "place"},
                             {"start_frame": 0, "end_frame": 2, "action_text": "pick the block", "skill": "pick"}]}
    row.update(fields)
    return row


def write_jsonl(root: Path, rows: list, name: str = "episodes.jsonl") -> Path:
    """Rows (dicts, or raw text lines) as a jsonl file, with real PNG frames for every frames_paths."""
    for row in rows:
        if isinstance(row, dict):
            for n, frame in enumerate(row.get("frames_paths") or []):
                if isinstance(frame, str) and not (root / frame).exists() and "missing" not in frame:
                    grey_png(root / frame, 10 * n)
    path = root / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_round_trip_of_a_hand_written_file(tmp_path: Path) -> None:
    absolute = tmp_path / "elsewhere" / "a.png"
    grey_png(absolute, 200)
    rows = [line("ep0"), "", line("ep1", frames=2, action_config=[], fps=15)]
    rows[2]["frames_paths"][1] = str(absolute)  # an absolute path stays as it is
    path = write_jsonl(tmp_path, rows)
    episodes = read_episodes(path)
    assert read_episodes(tmp_path) == episodes  # the folder holding episodes.jsonl reads the same
    first, second = episodes
    assert first == Episode(
        episode_id="ep0", task_name="stack", init_scene_text="two blocks",
        segments=(Segment(0, 2, "pick the block", "pick"), Segment(3, 5, "put it down", "place")),
        num_frames=6, frames_paths=tuple(tmp_path / f"frames/ep0/{n}.png" for n in range(6)), video=None, fps=None,
        source=f"{path}:1")
    assert second.segments == () and second.num_frames == 2 and second.fps == 15.0
    assert second.frames_paths[1] == absolute and second.source == f"{path}:3"  # line 2 is blank
    images = load_frames(first, [5, 0, 5], size=(4, 3))
    assert [im.size for im in images] == [(4, 3)] * 3 and all(im.mode == "RGB" for im in images)
    assert [np.asarray(im).mean() for im in images] == pytest.approx([50, 0, 50], abs=1)
    assert np.asarray(load_frames(second, [1], None)[0]).mean() == pytest.approx(200, abs=1)


def segment(start, end, text="t", skill="s") -> dict:
    return {"start_frame": start, "end_frame": end, "action_text": text, "skill": skill}


BAD_LINES = {
    "malformed json": ('{"episode_id": "ep0", ', None),
    "missing task_name": (lambda r: r.pop("task_name"), "task_name"),
    "wrong type of init_scene_text": (lambda r: r.update(init_scene_text=3), "init_scene_text"),
    "boolean start_frame": (lambda r: r.update(action_config=[segment(True, 2)]), "action_config[0].start_frame"),
    "string end_frame": (lambda r: r.update(action_config=[segment(0, "2")]), "action_config[0].end_frame"),
    "action_config not a list": (lambda r: r.update(action_config={}), "action_config"),
    "segment missing skill": (lambda r: r["action_config"][0].pop("skill"), "action_config[0].skill"),
    "neither frames nor video": (lambda r: r.pop("frames_paths"), "frames_paths"),
    "both frames and video": (lambda r: r.update(video="v.mp4"), "frames_paths"),
    "missing frame file": (lambda r: r["frames_paths"].__setitem__(4, "frames/missing.png"), "frames_paths[4]"),
    "missing video file": (lambda r: (r.pop("frames_paths"), r.update(video="missing.mp4")), "video"),
    "end before start": (lambda r: r.update(action_config=[segment(3, 2)]), "action_config[0].end_frame"),
    "negative start": (lambda r: r.update(action_config=[segment(-1, 2)]), "action_config[0].start_frame"),
    "end past the episode": (lambda r: r.update(action_config=[segment(2, 6)]), "action_config[0].end_frame"),
    "bad fps": (lambda r: r.update(fps=0), "fps"),
    "empty episode_id": (lambda r: r.update(episode_id=""), "episode_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_bad_lines_name_the_file_the_line_and_the_field(tmp_path: Path, case: str) -> None:
    change, field = BAD_LINES[case]
    if isinstance(change, str):
        bad = change
    else:
        bad = line("bad")
        change(bad)
    path = write_jsonl(tmp_path, [line("ep0"), "", bad], name="my_episodes.jsonl")
    with pytest.raises(UserError) as error:
        read_episodes(path)
    message = str(error.value)
    assert "my_episodes.jsonl" in message and "line 3" in message and "\n" not in message
    if field is not None:
        assert f"field '{field}'" in message


def test_overlapping_segments_name_both(tmp_path: Path) -> None:
    bad = line("bad", frames=10, action_config=[segment(0, 2), segment(6, 8), segment(2, 4)])
    path = write_jsonl(tmp_path, [bad])
    with pytest.raises(UserError, match=r"line 1, field 'action_config': segments 0 \(frames 0-2\) and 2 "
                                        r"\(frames 2-4\) overlap"):
        read_episodes(path)


def test_duplicate_ids_and_a_missing_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [line("ep0"), line("ep1"), line("ep0")])
    with pytest.raises(UserError, match=r"line 3, field 'episode_id': 'ep0' is already the id of line 1"):
        read_episodes(path)
    with pytest.raises(UserError, match="nothing.jsonl: no such episodes file"):
        read_episodes(tmp_path / "nothing.jsonl")


def test_sampling_spreads_frames_over_the_episode() -> None:
    assert sample_frame_numbers(10, 4).tolist() == [1, 3, 6, 8]
    assert sample_frame_numbers(3, 5).tolist() == [0, 0, 1, 2, 2]
    assert sample_frame_numbers(100, 1).tolist() == [50]
    assert sample_frame_numbers(7, 7).tolist() == list(range(7))
    many = sample_frame_numbers(1000, 16)
    assert many.dtype == np.int64 and many[0] == 31 and many[-1] == 968 and (np.diff(many) > 0).all()
    with pytest.raises(ValueError):
        sample_frame_numbers(0, 4)


def test_segments_map_to_sampled_indices_and_back() -> None:
    frames = sample_frame_numbers(40, 8)
    assert frames.tolist() == [2, 7, 12, 17, 22, 27, 32, 37]
    segments = [Segment(start, end, "text", "skill") for start, end in ((0, 9), (10, 10), (15, 29), (35, 39))]
    pairs = to_sampled(segments, frames)
    # 9 -> 7 (2 away, 12 is 3); 10 -> 12; 15 -> 17 (2 away, 12 is 3); 29 -> 27; 35 -> 37; 39 -> 37
    assert pairs == [(0, 1), (2, 2), (3, 5), (7, 7)]
    assert to_original(pairs, frames) == [(2, 7), (12, 12), (17, 27), (37, 37)]
    # ties: 12 is 5 from 7 and from 17: a start goes to the earlier index, an end to the later
    assert to_sampled([(12, 12)], [7, 17]) == [(0, 1)]
    # repeated sampled frames (a short episode): a start takes the first copy, an end the last
    short = sample_frame_numbers(3, 5)  # 0, 0, 1, 2, 2
    assert to_sampled([Segment(0, 0, "x", "x"), Segment(2, 2, "y", "y")], short) == [(0, 1), (3, 4)]
    assert to_original([(0, 1), (3, 4)], short) == [(0, 0), (2, 2)]
    assert to_sampled([], frames) == []


def test_a_video_episode_loads_the_frames_it_names(tmp_path: Path) -> None:
    frames = [np.full((16, 16, 3), 4 * n, np.uint8) for n in range(30)]
    encode_video(tmp_path / "videos" / "clip.mp4", frames, fps=10)
    path = write_jsonl(tmp_path, [{"episode_id": "v", "video": "videos/clip.mp4", "task_name": "t",
                                   "init_scene_text": "", "action_config": [segment(5, 29)]}])
    (episode,) = read_episodes(path)
    assert video_length(tmp_path / "videos" / "clip.mp4") == (30, 10.0)
    assert episode.num_frames == 30 and episode.fps == 10.0 and episode.frames_paths is None
    assert episode.video == tmp_path / "videos" / "clip.mp4"
    wanted = sample_frame_numbers(30, 7)  # 2, 6, 10, 15, 19, 23, 27
    images = load_frames(episode, wanted, size=(8, 8))
    assert len(images) == 7 and {im.size for im in images} == {(8, 8)}
    assert [np.asarray(im).mean() for im in images] == pytest.approx((4 * wanted).tolist(), abs=3)
    assert np.asarray(load_frames(episode, [29], None)[0]).mean() == pytest.approx(116, abs=3)


def test_an_unreadable_image_or_video_names_the_file(tmp_path: Path) -> None:
    row = line("ep0", frames=2, action_config=[])
    path = write_jsonl(tmp_path, [row])
    (tmp_path / "frames/ep0/1.png").write_bytes(b"not a png")
    (episode,) = read_episodes(path)
    with pytest.raises(UserError, match=r"frames/ep0/1.png: cannot read this image"):
        load_frames(episode, [0, 1], None)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    video_path = write_jsonl(tmp_path, [{"episode_id": "v", "video": "broken.mp4", "task_name": "t",
                                         "init_scene_text": "", "action_config": []}], name="v.jsonl")
    with pytest.raises(UserError, match=r"v.jsonl, line 1, field 'video': .*broken.mp4: cannot read this video"):
        read_episodes(video_path)


def fake_episodes(ids: list[str]) -> list[Episode]:
    return [Episode(i, "t", "", (), 1, None, None, None, "x:1") for i in ids]


def test_splits_are_deterministic_disjoint_and_stable() -> None:
    episodes = fake_episodes([f"ep{i}" for i in range(400)])
    splits = split_episodes(episodes, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert split_episodes(episodes, 0.1, 0.2, seed=3) == splits
    ids = {name: [e.episode_id for e in part] for name, part in splits.items()}
    assert sorted(ids) == ["test", "train", "val"]
    assert sorted(itertools.chain(*ids.values())) == sorted(e.episode_id for e in episodes)  # disjoint, complete
    assert 20 <= len(ids["val"]) <= 60 and 55 <= len(ids["test"]) <= 105
    # adding episodes moves none of the old ones
    more = split_episodes(episodes + fake_episodes([f"new{i}" for i in range(100)]), 0.1, 0.2, seed=3)
    for name, old in ids.items():
        assert [e.episode_id for e in more[name] if e.episode_id.startswith("ep")] == old
    assert split_episodes(episodes, 0.1, 0.2, seed=4)["val"] != splits["val"]
    with pytest.raises(UserError, match="below 1"):
        split_episodes(episodes, 0.5, 0.5, seed=0)


def test_the_split_is_unchanged_by_qvl_data() -> None:
    """Synthetic, lerobot-import and short ids split as by segment's own sha256 code before it moved
    to qvl.data.split_items (the digests were computed with that code, at commit a2fa36d)."""
    import hashlib
    import json

    ids = ([f"ep{i:05d}" for i in range(2000)] + [f"episode_{i:06d}" for i in range(500)]
           + [f"ep{i}" for i in range(400)] + [f"new{i}" for i in range(100)])
    episodes = fake_episodes(ids)
    expected = {(0.1, 0.1, 0): "5ac5905f8cd1179c", (0.1, 0.2, 3): "6e50a77e083620fb", (0.15, 0.15, 42): "075f1151a7d9dc96"}
    for (val, test, seed), digest in expected.items():
        splits = split_episodes(episodes, val, test, seed)
        chosen = {name: [e.episode_id for e in part] for name, part in splits.items()}
        assert hashlib.sha256(json.dumps(chosen).encode()).hexdigest()[:16] == digest, (val, test, seed)
