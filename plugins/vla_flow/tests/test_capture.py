"""The capture format: writing, reading, checking and aligning input to frames."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import attrs
import numpy as np
import pytest
from qvl.errors import UserError

from qvl_vla_flow.actions import VK_CODES, ActionSpace
from qvl_vla_flow.alignment import align
from qvl_vla_flow.capture_format import read_episode, write_episode

UP, DOWN, LEFT = VK_CODES["UP"], VK_CODES["DOWN"], VK_CODES["LEFT"]
SPACE = ActionSpace()
KEY_UP, KEY_DOWN, KEY_LEFT = (SPACE.key_index(vk) for vk in (UP, DOWN, LEFT))
MOUSE_X, MOUSE_Y, MOUSE_DX, MOUSE_DY, BUTTON_LEFT, BUTTON_RIGHT, BUTTON_MIDDLE = range(7)


def column(alignment, index: int) -> list[float]:
    return alignment.actions[:, index].tolist()


def colour_index(capture, frame: np.ndarray) -> int:
    """Which of the factory's frame colours a decoded frame is closest to."""
    return int(np.argmin([np.abs(frame.astype(int) - capture.colour(i)).mean() for i in range(12)]))


# -- writing and reading ---------------------------------------------------------------------


def test_write_read_round_trip(capture):
    folder = capture.write("ep7", frame_ms=(0, 100, 200, 300, 400), env="MiniWorld-OneRoomS6-v0", seed=3,
                           events=[capture.key("keydown", 150, UP)])
    assert sorted(p.name for p in folder.iterdir()) == ["events.jsonl", "frame_ts.bin", "meta.json", "video.mp4"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    episode = read_episode(folder)
    assert episode.name == "ep7" and episode.folder == folder
    assert (episode.fps, episode.canvas_w, episode.canvas_h) == (10.0, 32, 32)
    assert (episode.qpc_freq, episode.offset_ms, episode.instruction) == (capture.FREQ, 12.5, "go to the red box")
    assert episode.meta["env"] == "MiniWorld-OneRoomS6-v0" and episode.meta["seed"] == 3
    assert episode.num_frames == 5 and episode.frame_ts.dtype == np.int64
    assert episode.frame_ts.tolist() == [capture.ticks(ms) for ms in (0, 100, 200, 300, 400)]
    np.testing.assert_allclose(episode.frame_ms, [capture.absolute_ms(ms) for ms in (0, 100, 200, 300, 400)])
    assert np.diff(episode.frame_ms).tolist() == pytest.approx([100.0] * 4)
    (event,) = episode.events
    assert (event.line, event.kind, event.vk, event.ts) == (1, "keydown", UP, capture.ticks(150 - 12.5))
    assert event.ms == pytest.approx(capture.absolute_ms(150))  # the offset is applied
    assert event.raw == {"ts": capture.ticks(137.5), "kind": "keydown", "vk": UP}

    frames = episode.decode_frames()
    assert len(frames) == 5 and frames[0].shape == (32, 32, 3) and frames[0].dtype == np.uint8
    for i, frame in enumerate(frames):  # decoded in order, colours survive H.264 closely
        assert np.abs(frame.astype(int) - capture.colour(i)).mean() < 4, i
    assert [colour_index(capture, f) for f in episode.decode_frames([4, 1, 1])] == [4, 1, 1]
    image = episode.decode_frames([2], as_pil=True)[0]
    assert image.size == (32, 32) and image.mode == "RGB"
    with pytest.raises(IndexError):
        episode.decode_frames([5])


def test_write_keeps_duplicate_frames_and_meta(capture):
    folder = capture.write("dup", frame_ms=(0, 100, 100, 200), colours=(0, 1, 1, 2), success=True)
    episode = read_episode(folder)
    assert episode.num_frames == 4
    assert episode.frame_ts[1] == episode.frame_ts[2]
    assert json.loads((folder / "meta.json").read_text())["success"] is True


def test_write_accepts_numpy_values(tmp_path):
    frames = [np.zeros((32, 32, 3), np.uint8)] * 2
    meta = {"fps": np.float64(10), "canvas_w": 32, "canvas_h": 32, "qpc_freq": 1000, "offset_ms": 0,
            "success": np.bool_(True), "seed": np.int64(3)}
    events = [{"ts": np.int64(50), "kind": "keydown", "vk": np.int64(38)}]
    write_episode(tmp_path / "ep", frames, np.array([0, 100]), events, meta)
    episode = read_episode(tmp_path / "ep")
    assert episode.meta["success"] is True and episode.meta["seed"] == 3
    assert (episode.events[0].ts, episode.events[0].vk) == (50, 38)
    assert episode.frame_ms.tolist() == [0.0, 100.0]


def test_write_refuses_an_existing_folder(tmp_path):
    folder = tmp_path / "recordings" / "ep"
    folder.mkdir(parents=True)
    (folder / "mine.txt").write_text("keep me")
    frames = [np.zeros((32, 32, 3), np.uint8)]
    meta = {"fps": 10, "canvas_w": 32, "canvas_h": 32, "qpc_freq": 1000, "offset_ms": 0}
    with pytest.raises(UserError, match="already exists"):
        write_episode(folder, frames, [0], [], meta)
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    assert sorted(p.name for p in folder.parent.iterdir()) == ["ep"]  # nothing left beside it
    with pytest.raises(ValueError, match="one timestamp per frame"):
        write_episode(tmp_path / "other", frames, [0, 1], [], meta)
    assert not (tmp_path / "other").exists()


# -- alignment -------------------------------------------------------------------------------


def test_event_offset_is_applied_before_aligning(capture):
    # pressed at frame-clock 205 ms (frame 2): its ts says 192.5 ms, which is frame 1 without the offset
    events = [capture.key("keydown", 205, UP), capture.key("keyup", 210, UP)]
    aligned = align(read_episode(capture.write("ep", events=events)), SPACE)
    assert column(aligned, KEY_UP) == [-1, -1, 1, -1]
    assert [len(raw) for raw in aligned.raw_events] == [0, 0, 2, 0]
    # the same ticks, with a meta.json that says the clocks agree: the press lands in frame 1
    same = capture.write("no_offset", events=events, offset_ms=0)
    assert column(align(read_episode(same), SPACE), KEY_UP) == [-1, 1, -1, -1]


def test_frames_steps_and_intervals(capture):
    aligned = align(read_episode(capture.write(frame_ms=(0, 100, 250, 300))), SPACE)
    assert aligned.frames.tolist() == [0, 1, 2, 3] and aligned.steps.tolist() == [0, 1, 2, 3]
    assert aligned.actions.dtype == np.float32 and aligned.actions.shape == (4, SPACE.dim)
    start = capture.absolute_ms(0)
    # the last interval ends one median frame period (diffs 100, 150, 50 -> 100) after the last frame
    np.testing.assert_allclose(aligned.intervals_ms - start, [[0, 100], [100, 250], [250, 300], [300, 400]])
    np.testing.assert_allclose(aligned.timestamp_ms - start, [0, 100, 250, 300])


def test_tap_inside_one_interval_counts(capture):
    events = [capture.key("keydown", 120, DOWN), capture.key("keyup", 160, DOWN)]
    aligned = align(read_episode(capture.write(events=events)), SPACE)
    assert column(aligned, KEY_DOWN) == [-1, 1, -1, -1]
    assert column(aligned, KEY_UP) == [-1, -1, -1, -1]


def test_key_held_across_frames_with_repeated_keydowns(capture):
    # down in frame 0, auto-repeat keydowns in frames 0-2, up inside frame 2: held in 0, 1, 2
    events = [capture.key("keydown", 50, UP), capture.key("keydown", 80, UP), capture.key("keydown", 130, UP),
              capture.key("keydown", 180, UP), capture.key("keyup", 250, UP), capture.key("keydown", 350, LEFT)]
    aligned = align(read_episode(capture.write(frame_ms=(0, 100, 200, 300, 400), events=events)), SPACE)
    assert column(aligned, KEY_UP) == [1, 1, 1, -1, -1]
    assert column(aligned, KEY_LEFT) == [-1, -1, -1, 1, 1]  # never released: held to the end
    assert [len(raw) for raw in aligned.raw_events] == [2, 2, 1, 1, 0]
    assert aligned.raw_events[2] == [events[4]]  # the objects as written
    assert aligned.unknown_keys == Counter()


def test_events_before_the_first_frame_set_the_initial_state(capture):
    events = [capture.key("keydown", -50, UP), capture.event("mousemove", -30, x=31, y=0),
              capture.key("keyup", 150, UP)]
    aligned = align(read_episode(capture.write(events=events)), SPACE)
    assert aligned.events_before == 2
    assert aligned.raw_events[0] == []  # they belong to no frame
    assert column(aligned, KEY_UP) == [1, 1, -1, -1]
    assert column(aligned, MOUSE_X) == [1, 1, 1, 1] and column(aligned, MOUSE_Y) == [-1, -1, -1, -1]
    assert column(aligned, MOUSE_DX) == [0, 0, 0, 0] and column(aligned, MOUSE_DY) == [0, 0, 0, 0]


def test_mouse_position_carried_forward_and_delta(capture):
    # canvas 32: x pixel 0 -> -1, 31 -> +1, 23.25 -> 0.5; the centre (15.5) -> 0
    events = [capture.event("mousemove", 20, x=23.25, y=15.5), capture.event("mousemove", 60, x=31, y=15.5),
              capture.event("mousemove", 220, x=0, y=31), capture.event("mousemove", 320, x=7.75, y=31)]
    aligned = align(read_episode(capture.write(frame_ms=(0, 100, 200, 300), events=events)), SPACE)
    assert column(aligned, MOUSE_X) == pytest.approx([1, 1, -1, -0.5])
    assert column(aligned, MOUSE_Y) == pytest.approx([0, 0, 1, 1])
    # frame 0 moved from the canvas centre; frame 2's dx (-2) is clipped
    assert column(aligned, MOUSE_DX) == pytest.approx([1, 0, -1, 0.5])
    assert column(aligned, MOUSE_DY) == pytest.approx([0, 0, 1, 0])
    assert column(aligned, BUTTON_LEFT) == [-1, -1, -1, -1]


def test_mouse_starts_at_the_canvas_centre(capture):
    aligned = align(read_episode(capture.write(frame_ms=(0, 100))), SPACE)
    assert aligned.actions[:, :4].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]
    assert aligned.actions[:, 4:].tolist() == [[-1] * (SPACE.dim - 4)] * 2


def test_button_bitmask(capture):
    events = [capture.event("mouseclick", 10, x=5, y=5),  # no buttons: left
              capture.event("mouseclick", 110, x=5, y=5, buttons=2),
              capture.event("mouseclick", 210, x=5, y=5, buttons=5),
              capture.event("mouseclick", 310, x=5, y=5, buttons=8)]  # X1: not a channel, counted
    aligned = align(read_episode(capture.write(frame_ms=(0, 100, 200, 300), events=events)), SPACE)
    assert column(aligned, BUTTON_LEFT) == [1, -1, 1, -1]
    assert column(aligned, BUTTON_RIGHT) == [-1, 1, -1, -1]
    assert column(aligned, BUTTON_MIDDLE) == [-1, -1, 1, -1]
    assert aligned.unknown_buttons == Counter({8: 1})
    assert column(aligned, MOUSE_X)[0] == pytest.approx(2 * 5 / 31 - 1)


def test_duplicate_frames_dropped_or_kept(capture):
    frame_ms = (0, 100, 100, 200, 200, 200, 300)
    events = [capture.key("keydown", 150, UP), capture.key("keyup", 160, UP),
              capture.event("mousemove", 250, x=31, y=15.5),
              capture.key("keydown", 395, DOWN),  # inside the last interval [300, 400)
              capture.key("keyup", 405, DOWN)]  # after it: in no frame
    episode = read_episode(capture.write(frame_ms=frame_ms, colours=(0, 1, 1, 2, 2, 2, 3), events=events))

    dropped = align(episode, SPACE, "drop")
    assert dropped.frames.tolist() == [0, 1, 3, 6] and dropped.steps.tolist() == [0, 1, 2, 3]
    assert (dropped.duplicates, dropped.duplicates_dropped, len(dropped)) == (3, 3, 4)
    assert column(dropped, KEY_UP) == [-1, 1, -1, -1]
    assert column(dropped, KEY_DOWN) == [-1, -1, -1, 1]
    assert column(dropped, MOUSE_DX) == pytest.approx([0, 0, 1, 0])
    assert dropped.events_after == 1
    np.testing.assert_allclose(dropped.intervals_ms[:, 1] - capture.absolute_ms(0), [100, 200, 300, 400])

    kept = align(episode, SPACE, "keep")
    assert kept.frames.tolist() == list(range(7)) and kept.steps.tolist() == list(range(7))
    assert (kept.duplicates, kept.duplicates_dropped, len(kept)) == (3, 0, 7)
    group = [0, 1, 1, 2, 2, 2, 3]  # each frame's row in the dropped alignment
    np.testing.assert_array_equal(kept.actions, dropped.actions[group])
    assert kept.raw_events == [dropped.raw_events[g] for g in group]
    np.testing.assert_allclose(kept.timestamp_ms, episode.frame_ms)
    with pytest.raises(ValueError, match="duplicate_frames"):
        align(episode, SPACE, "merge")  # type: ignore[arg-type]


def test_unknown_keys_are_counted_not_ignored(capture):
    a, b, f1 = VK_CODES["A"], VK_CODES["B"], 0x70
    events = [capture.key("keydown", 10, a), capture.key("keydown", 40, a), capture.key("keydown", 70, a),
              capture.key("keyup", 90, a), capture.key("keydown", 120, f1), capture.key("keyup", 130, f1),
              capture.key("keyup", 140, b),  # held since before the recording
              capture.key("keydown", 210, a), capture.key("keyup", 220, a), capture.key("keydown", 230, UP)]
    episode = read_episode(capture.write(events=events))
    aligned = align(episode, SPACE)
    assert aligned.unknown_keys == Counter({a: 2, f1: 1, b: 1})  # auto-repeat counts once
    assert column(aligned, KEY_UP) == [-1, -1, 1, 1]
    assert (aligned.actions[:2, 4:] == -1).all()  # nothing else in the vector moved
    with_a = ActionSpace(("UP", "A"))
    aligned = align(episode, with_a)
    assert aligned.unknown_keys == Counter({f1: 1, b: 1})
    assert aligned.actions[:, with_a.key_index(a)].tolist() == [1, -1, 1, -1]


# -- checks ----------------------------------------------------------------------------------


def _rewrite_events(folder: Path, lines: list[str]) -> None:
    (folder / "events.jsonl").write_text("".join(line + "\n" for line in lines))


def _set_meta(folder: Path, **changes) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    for key, value in changes.items():
        if value is None:
            meta.pop(key)
        else:
            meta[key] = value
    (folder / "meta.json").write_text(json.dumps(meta))


def _ticks_file(folder: Path, values: list[int]) -> None:
    np.asarray(values, dtype="<i8").tofile(folder / "frame_ts.bin")


GOOD = '{"ts": 360000000000, "kind": "keydown", "vk": 38}'

BAD_INPUTS = {
    "missing file": (lambda f, c: (f / "events.jsonl").unlink(), ["events.jsonl: missing"]),
    "meta missing key": (lambda f, c: _set_meta(f, qpc_freq=None), ["meta.json: key 'qpc_freq' missing"]),
    "meta wrong type": (lambda f, c: _set_meta(f, canvas_w="32"), ["meta.json: key 'canvas_w'", "integer"]),
    "meta instruction": (lambda f, c: _set_meta(f, instruction=3), ["meta.json: key 'instruction'", "string"]),
    "meta not json": (lambda f, c: (f / "meta.json").write_text("{fps: 10"), ["meta.json: not valid JSON"]),
    "ts not 8 bytes": (lambda f, c: (f / "frame_ts.bin").write_bytes(b"\0" * 27), ["frame_ts.bin: 27 bytes"]),
    "ts empty": (lambda f, c: (f / "frame_ts.bin").write_bytes(b""), ["frame_ts.bin: empty"]),
    "ts decreasing": (lambda f, c: _ticks_file(f, [c.ticks(0), c.ticks(100), c.ticks(50), c.ticks(300)]),
                      ["frame_ts.bin: frame 2's timestamp", "before frame 1's", "non-decreasing"]),
    "count mismatch": (lambda f, c: _ticks_file(f, [c.ticks(100 * i) for i in range(5)]),
                       ["video.mp4: has 4 frames but frame_ts.bin has 5 timestamps"]),
    "truncated video": (lambda f, c: (f / "video.mp4").write_bytes((f / "video.mp4").read_bytes()[:600]),
                        ["video.mp4: cannot read this video"]),
    "not a video": (lambda f, c: (f / "video.mp4").write_text("hello"), ["video.mp4: cannot read this video"]),
    "event not json": (lambda f, c: _rewrite_events(f, [GOOD, '{"ts": 1, "kind"']),
                       ["events.jsonl, line 2: not valid JSON"]),
    "event not object": (lambda f, c: _rewrite_events(f, ["[1, 2]"]), ["events.jsonl, line 1: expected a JSON object"]),
    "unknown kind": (lambda f, c: _rewrite_events(f, [GOOD, '{"ts": 360000000001, "kind": "scroll"}']),
                     ["events.jsonl, line 2, field 'kind'", "mousemove, mouseclick, keydown, keyup", "'scroll'"]),
    "missing field": (lambda f, c: _rewrite_events(f, ['{"ts": 5, "kind": "mousemove", "x": 3}']),
                      ["events.jsonl, line 1, field 'y': missing"]),
    "missing ts": (lambda f, c: _rewrite_events(f, ['{"kind": "keyup", "vk": 38}']),
                   ["events.jsonl, line 1, field 'ts': missing", "integer QPC tick count"]),
    "mistyped vk": (lambda f, c: _rewrite_events(f, [GOOD, GOOD, '{"ts": 360000000000, "kind": "keyup", "vk": "UP"}']),
                    ["events.jsonl, line 3, field 'vk'", "virtual-key code", "'UP'"]),
    "mistyped ts": (lambda f, c: _rewrite_events(f, ['{"ts": 1.5, "kind": "keyup", "vk": 38}']),
                    ["events.jsonl, line 1, field 'ts'"]),
    "mistyped buttons": (lambda f, c: _rewrite_events(f, ['{"ts": 1, "kind": "mouseclick", "x": 1, "y": 1, '
                                                          '"buttons": true}']),
                         ["events.jsonl, line 1, field 'buttons'", "bit mask"]),
    "out of order": (lambda f, c: _rewrite_events(f, [GOOD, '{"ts": 359999999999, "kind": "keyup", "vk": 38}']),
                     ["events.jsonl, line 2, field 'ts'", "before line 1's", "time order"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_a_user_error_naming_episode_file_and_line(capture, case):
    damage, expected = BAD_INPUTS[case]
    folder = capture.write("episode_042", events=[capture.key("keydown", 50, UP)])
    damage(folder, capture)
    with pytest.raises(UserError) as error:
        read_episode(folder)
    message = str(error.value)
    assert "\n" not in message
    assert str(folder) in message  # the episode folder, then the file
    for part in expected:
        assert part in message, (part, message)


def test_equal_frame_timestamps_and_events_are_allowed(capture):
    folder = capture.write(frame_ms=(0, 0, 100, 200), colours=(0, 0, 1, 2))
    _rewrite_events(folder, [GOOD, GOOD, ""])  # same ts twice; blank lines are skipped
    episode = read_episode(folder)
    assert len(episode.events) == 2 and episode.num_frames == 4


def test_video_size_must_be_the_canvas(capture):
    folder = capture.write()
    _set_meta(folder, canvas_w=64)
    with pytest.raises(UserError, match=r"video.mp4: is 32x32 but meta.json says canvas_w x canvas_h = 64x32"):
        read_episode(folder)


def test_a_video_shorter_than_its_count_is_reported_when_decoding(capture):
    episode = read_episode(capture.write())
    longer = attrs.evolve(episode, num_frames=6)  # as if the container had promised 6 frames
    with pytest.raises(UserError, match=r"video.mp4: only 4 of its 6 frames could be decoded"):
        longer.decode_frames()
    assert [colour_index(capture, f) for f in longer.decode_frames([3, 0])] == [3, 0]  # those it has: fine
