"""The recorder: a scripted Miniworld expert written in the capture format, read back and aligned."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import pytest

from qvl.errors import UserError
from qvl_vla_flow import record as rec
from qvl_vla_flow.actions import (BUTTONS, MOUSE_DIMS, PRESSED, RELEASED, VK_CODES, ActionSpace, miniworld_action,
                                  normalise)
from qvl_vla_flow.alignment import align
from qvl_vla_flow.capture_format import read_episode, write_episode
from qvl_vla_flow.config import RecordSettings, VlaFlowConfig

needs_sim = pytest.mark.skipif(importlib.util.find_spec("miniworld") is None,
                               reason="miniworld not installed (pip install qvl-vla-flow[sim])")
SPACE = ActionSpace()
ENV = "MiniWorld-OneRoomS6-v0"
LEFT_BUTTON = len(MOUSE_DIMS) + BUTTONS.index("left")


def small(**changes) -> RecordSettings:
    fields = {"episodes": 3, "canvas": 64, "max_steps": 40, "seed": 5, "duplicate_rate": 0.5, **changes}
    return RecordSettings(**fields)


def episodes(out: Path) -> list[Path]:
    return sorted(out.glob("episode_*"))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    if importlib.util.find_spec("miniworld") is None:
        pytest.skip("miniworld not installed")
    out = tmp_path_factory.mktemp("rec") / "recordings"
    settings = small()
    summary = rec.record(out, settings, SPACE, progress=False)
    return out, settings, summary


# ---------------------------------------------------------------------------------------------
# with the simulator


@needs_sim
def test_round_trip_reproduces_the_expert(recorded):
    out, settings, summary = recorded
    folders = episodes(out)
    assert [f.name for f in folders] == ["episode_000000", "episode_000001", "episode_000002"]
    assert summary["episodes"] == 3 and not summary["reused"]
    total_frames = 0
    for index, folder in enumerate(folders):
        episode = read_episode(folder)
        meta = episode.meta
        steps = meta["steps"]
        assert 1 <= steps <= settings.max_steps and len(meta["expert_actions"]) == steps
        assert episode.num_frames == steps + 1 + meta["duplicates"]
        total_frames += episode.num_frames
        # meta
        assert meta["env"] == ENV and meta["seed"] == settings.seed + index
        assert (meta["fps"], meta["canvas_w"], meta["canvas_h"]) == (10.0, 64, 64)
        assert (meta["qpc_freq"], meta["offset_ms"]) == (settings.qpc_freq, settings.offset_ms)
        assert meta["instruction"] == "go to the red box"
        assert isinstance(meta["success"], bool)
        assert meta["success"] or steps == settings.max_steps  # only the step limit ends a failure
        # a realistic QPC base (hours of uptime), frames ~100 ms apart with a few ms of jitter
        assert episode.frame_ts[0] > 3600 * settings.qpc_freq
        gaps = np.diff(np.unique(episode.frame_ms))
        assert np.all(np.abs(gaps - 100.0) <= 6.0)

        for mode in ("drop", "keep"):
            alignment = align(episode, SPACE, mode)
            assert len(alignment) == (steps + 1 if mode == "drop" else episode.num_frames)
            assert not alignment.unknown_keys and alignment.events_after == 0
        alignment = align(episode, SPACE, "drop")
        executed = [miniworld_action(SPACE, action) for action in alignment.actions]
        assert executed == [*meta["expert_actions"], None]  # the last frame has no key held
        for action in alignment.actions:
            assert sum(action[i] > 0 for i in SPACE.key_indices) <= 1  # one key at a time
        # the click lands in the first frame, where the cursor ends; the cursor rests afterwards
        clicks = [step for step, action in enumerate(alignment.actions) if action[LEFT_BUTTON] == PRESSED]
        assert clicks == [0]
        click = next(e for e in alignment.raw_events[0] if e["kind"] == "mouseclick")
        assert click["buttons"] == 1 and 0 <= click["x"] < 64 and 0 <= click["y"] < 64
        first = alignment.actions[0]
        assert first[0] == pytest.approx(normalise(click["x"], 64))
        assert first[1] == pytest.approx(normalise(click["y"], 64))
        assert np.all(alignment.actions[1:, 2:4] == 0.0)
        moves = [e for e in alignment.raw_events[0] if e["kind"] == "mousemove"]
        assert 3 <= len(moves) <= 6 and (moves[-1]["x"], moves[-1]["y"]) == (click["x"], click["y"])
        # keys: pressed a few ms after their frame, released before the next action's frame
        frame_ms = episode.frame_ms[alignment.frames]
        for step in range(1, steps):
            downs = [e for e in episode.events if e.kind == "keydown" and frame_ms[step] <= e.ms < frame_ms[step] + 10]
            changed = meta["expert_actions"][step] != meta["expert_actions"][step - 1]
            if changed:
                key = VK_CODES[rec.ACTION_KEYS[meta["expert_actions"][step]]]
                assert [e.vk for e in downs] == [key]
        assert episode.events[-1].kind == "keyup" and episode.events[-1].ms < frame_ms[-1]
        # Windows auto-repeat: while a key is held past 500 ms, a keydown every ~33 ms
        times = [e.ms for e in episode.events if e.kind == "keydown"]
        repeats = np.diff(times)
        assert np.all(repeats > 25.0)
    assert summary["frames"] == total_frames


@needs_sim
def test_duplicates_at_the_configured_rate(recorded):
    out, settings, summary = recorded
    distinct = duplicates = 0
    for folder in episodes(out):
        episode = read_episode(folder)
        alignment = align(episode, SPACE, "drop")
        assert alignment.duplicates == episode.meta["duplicates"] == alignment.duplicates_dropped
        distinct += len(alignment)
        duplicates += alignment.duplicates
        # a duplicate repeats the image of the frame before it (same timestamp, same observation)
        repeated = np.flatnonzero(np.diff(episode.frame_ts) == 0) + 1
        if len(repeated):
            frames = episode.decode_frames([int(repeated[0]) - 1, int(repeated[0])])
            assert np.abs(frames[0].astype(int) - frames[1].astype(int)).mean() < 2.0
    assert summary["duplicates"] == duplicates
    assert 0.3 <= duplicates / distinct <= 0.7  # duplicate_rate 0.5


@needs_sim
def test_same_settings_reuse_other_settings_rebuild(recorded, tmp_path):
    out, settings, _ = recorded
    meta = out / "episode_000000" / "meta.json"
    marker = out / ".qvl.json"
    before = (meta.stat().st_mtime_ns, marker.stat().st_mtime_ns)
    again = rec.record(out, small(), SPACE, progress=False)
    assert again["reused"] and again["episodes"] == 3
    assert (meta.stat().st_mtime_ns, marker.stat().st_mtime_ns) == before

    # other settings: a new build (here in a copy's place, so the module's recording stays)
    target = tmp_path / "other"
    first = rec.record(target, small(episodes=1, max_steps=5, duplicate_rate=0.0), SPACE, progress=False)
    assert not first["reused"] and first["duplicates"] == 0 and first["frames"] == first["steps"] + 1
    marker_time = (target / ".qvl.json").stat().st_mtime_ns
    second = rec.record(target, small(episodes=1, max_steps=4, duplicate_rate=0.0), SPACE, progress=False)
    assert not second["reused"] and second["steps"] <= 4
    assert (target / ".qvl.json").stat().st_mtime_ns != marker_time
    assert json.loads((target / "episode_000000" / "meta.json").read_text())["steps"] == second["steps"]


@needs_sim
def test_expert_reaches_the_box():
    result = rec.expert_success_rate(ENV, seeds=range(100, 110), max_steps=100, canvas=16)
    assert result["episodes"] == 10
    assert result["success_rate"] >= 0.8


# ---------------------------------------------------------------------------------------------
# refusals and folders (no simulator run)


def test_a_users_folder_is_refused(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not written by qvl"):
        rec.record(folder, small(), SPACE, progress=False)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert (folder / "notes.txt").read_text() == "keep me"


def test_unsupported_env_space_and_canvas_are_refused(tmp_path):
    with pytest.raises(UserError, match="MiniWorld-OneRoomS6-v0"):
        rec.record(tmp_path / "a", small(env="MiniWorld-Maze-v0"), SPACE, progress=False)
    with pytest.raises(UserError, match="lacks"):
        rec.record(tmp_path / "b", small(), ActionSpace(("UP", "DOWN")), progress=False)
    with pytest.raises(UserError, match="even"):
        rec.record(tmp_path / "c", small(canvas=63), SPACE, progress=False)
    assert not any(tmp_path.iterdir())


def test_recordings_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    task = VlaFlowConfig()
    folder = rec.recordings_folder(types.SimpleNamespace(task=task))
    assert folder.parent == tmp_path / "cache" / "vla_flow" / "recordings"
    assert len(folder.name) == 16 and int(folder.name, 16) >= 0
    task.record.seed += 1
    assert rec.recordings_folder(types.SimpleNamespace(task=task)) != folder
    task.recordings_dir = str(tmp_path / "mine")
    assert rec.recordings_folder(types.SimpleNamespace(task=task)) == tmp_path / "mine"


# ---------------------------------------------------------------------------------------------
# the input timeline through the capture format, at other frame rates and offsets (no simulator)


@pytest.mark.parametrize(("fps", "offset_ms"), [(10.0, 12.5), (30.0, -7.25), (60.0, 0.0)])
def test_timeline_round_trip(tmp_path, fps, offset_ms):
    rng = np.random.default_rng(7)
    hold = int(fps * 1.2)  # 1.2 s of one key: auto-repeat
    actions = [str(a) for a in rng.choice(rec.EXPERT_ACTIONS, size=hold + 20, p=[0.2, 0.2, 0.6])]
    actions[9:11 + hold] = ["turn_left", *["move_forward"] * hold, "turn_right"]
    frame_ms, events = rec.timeline(actions, fps, 64, np.random.default_rng(1))
    qpc_freq, base = 3_000_000, 7 * 3600 * 3_000_000
    frame_ts = [rec.to_qpc(ms, qpc_freq, base) for ms in frame_ms]
    written = [{"ts": rec.to_qpc(e["ms"] - offset_ms, qpc_freq, base), **{k: v for k, v in e.items() if k != "ms"}}
               for e in events]
    frames = [np.zeros((64, 64, 3), np.uint8)] * len(frame_ts)
    write_episode(tmp_path / "ep", frames, frame_ts, written,
                  {"fps": fps, "canvas_w": 64, "canvas_h": 64, "qpc_freq": qpc_freq, "offset_ms": offset_ms})
    alignment = align(read_episode(tmp_path / "ep"), SPACE)
    assert [miniworld_action(SPACE, a) for a in alignment.actions] == [*actions, None]
    assert [s for s, a in enumerate(alignment.actions) if a[LEFT_BUTTON] == PRESSED] == [0]
    assert np.all(alignment.actions[:, len(MOUSE_DIMS) + 1:len(MOUSE_DIMS) + 3] == RELEASED)
    up = VK_CODES["UP"]
    held = [e["ms"] for e in events if e["kind"] == "keydown" and e["vk"] == up
            and frame_ms[10] <= e["ms"] < frame_ms[10 + hold]]
    assert len(held) >= 2  # the press and its repeats
    assert np.diff(held)[0] == pytest.approx(rec.REPEAT_DELAY_MS, abs=10)
    assert np.all(np.abs(np.diff(held)[1:] - rec.REPEAT_MS) <= 2.0)
