"""Aligning a recorded episode's input events to its video frames: one action per kept frame.

Event and frame times are on the frame clock (**Time** in :mod:`qvl_vla_flow.capture_format`).

**Alignment** (:func:`align`). Frame ``i`` owns the events of ``[t_i, t_i+1)`` on the frame clock;
the last frame's interval ends one median frame period after it. Events before the first frame
set the initial state (keys already held, the cursor position) but belong to no frame; events at
or after the end of the last interval belong to none either. A frame's action (layout:
:mod:`qvl_vla_flow.actions`) is: each key ``+1`` when it was down at any time in the interval
(held from before, pressed in it, or tapped down and up inside it); each button ``+1`` when a
mouseclick of it falls in the interval; ``mouse_x / mouse_y`` the cursor at the end of the
interval (carried forward, the canvas centre before any mouse event); ``mouse_dx / mouse_dy`` its
change since the previous kept frame (for the first frame: since the start of its interval),
clipped to ``[-1, 1]``. Frames with the timestamp of the frame before them are duplicates: with
``"drop"`` only the first is kept and its interval runs to the next distinct timestamp, with
``"keep"`` all are kept and the repeats get the first's action and events.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

import attrs
import numpy as np

from qvl_vla_flow.actions import BUTTONS, MOUSE_DIMS, PRESSED, RELEASED, ActionSpace, normalise
from qvl_vla_flow.capture_format import MOUSE_KINDS, Event, RecordedEpisode

DUPLICATE_MODES = ("drop", "keep")


@attrs.frozen(eq=False)
class Alignment:
    """One action per kept frame of an episode (:func:`align`); arrays are indexed by ``step``.

    :ivar frames: the video frame index of each kept frame (int64).
    :ivar timestamp_ms: its time on the frame clock (float64).
    :ivar steps: ``0 .. n-1`` (int64).
    :ivar actions: float32 ``[n, space.dim]``.
    :ivar intervals_ms: ``[n, 2]``: the ``[start, end)`` of each kept frame's interval.
    :ivar raw_events: for each kept frame the objects of the events in its interval, as written.
    :ivar unknown_keys: presses of keys outside the vocabulary, by virtual-key code (a keydown of a
        key not already down, or a keyup of one never pressed: auto-repeat counts once).
    :ivar unknown_buttons: mouseclick mask bits other than left/right/middle, by bit value.
    :ivar duplicates: frames whose timestamp repeats the previous frame's;
        ``duplicates_dropped``: how many of them were dropped (all with "drop", none with "keep").
    :ivar events_before / events_after: events before the first frame (initial state only) and
        at or after the end of the last frame's interval (in no frame).
    """

    episode: str
    space: ActionSpace
    frames: np.ndarray
    timestamp_ms: np.ndarray
    steps: np.ndarray
    actions: np.ndarray
    intervals_ms: np.ndarray
    raw_events: list[list[dict[str, Any]]]
    unknown_keys: Counter
    unknown_buttons: Counter
    duplicates: int
    duplicates_dropped: int
    events_before: int
    events_after: int

    def __len__(self) -> int:
        return len(self.frames)


class _State:
    """The input state while events are replayed: keys down, cursor, unknown-key presses."""

    def __init__(self, episode: RecordedEpisode) -> None:
        self.held: set[int] = set()
        self.x, self.y = (episode.canvas_w - 1) / 2.0, (episode.canvas_h - 1) / 2.0
        self.unknown_keys: Counter = Counter()
        self.unknown_buttons: Counter = Counter()

    def apply(self, event: Event, space: ActionSpace, down: set[int], clicks: set[int]) -> None:
        """Replay ``event``; keys it holds go to ``down``, buttons it clicks to ``clicks``."""
        if event.kind in MOUSE_KINDS:
            self.x, self.y = event.x, event.y
            if event.kind == "mouseclick":
                assert event.buttons is not None
                for bit in range(event.buttons.bit_length()):
                    if event.buttons >> bit & 1:
                        if bit < len(BUTTONS):
                            clicks.add(bit)
                        else:
                            self.unknown_buttons[1 << bit] += 1
            return
        vk = event.vk
        assert vk is not None
        known = space.key_index(vk) is not None
        if event.kind == "keydown":
            if not known and vk not in self.held:
                self.unknown_keys[vk] += 1
            self.held.add(vk)
            down.add(vk)
        else:
            if not known and vk not in self.held and vk not in down:
                self.unknown_keys[vk] += 1  # released, never seen pressed: held since before the recording
            self.held.discard(vk)


def align(episode: RecordedEpisode, space: ActionSpace,
          duplicate_frames: Literal["drop", "keep"] = "drop") -> Alignment:
    """The action of each kept frame of ``episode`` (the rules: this module's docstring)."""
    if duplicate_frames not in DUPLICATE_MODES:
        raise ValueError(f"duplicate_frames={duplicate_frames!r}; expected 'drop' or 'keep'")
    ticks, ms = episode.frame_ts, episode.frame_ms
    first = np.ones(len(ticks), dtype=bool)
    first[1:] = ticks[1:] != ticks[:-1]
    groups = np.flatnonzero(first)  # frame index of each distinct timestamp
    starts = ms[groups]
    periods = np.diff(starts)
    period = float(np.median(periods)) if len(periods) else 1000.0 / episode.fps
    ends = np.append(starts[1:], starts[-1] + period)

    state = _State(episode)
    events = episode.events
    k, before = 0, 0
    while k < len(events) and events[k].ms < starts[0]:
        state.apply(events[k], space, set(), set())
        k, before = k + 1, before + 1
    x0, y0 = normalise(state.x, episode.canvas_w), normalise(state.y, episode.canvas_h)
    mouse = len(MOUSE_DIMS)
    group_actions = np.full((len(groups), space.dim), RELEASED, dtype=np.float32)
    group_events: list[list[dict[str, Any]]] = []
    for g in range(len(groups)):
        down, clicks = set(state.held), set()
        raw = []
        while k < len(events) and events[k].ms < ends[g]:
            state.apply(events[k], space, down, clicks)
            raw.append(events[k].raw)
            k += 1
        group_events.append(raw)
        x, y = normalise(state.x, episode.canvas_w), normalise(state.y, episode.canvas_h)
        action = group_actions[g]
        action[:mouse] = (x, y, np.clip(x - x0, -1.0, 1.0), np.clip(y - y0, -1.0, 1.0))
        x0, y0 = x, y
        for bit in clicks:
            action[mouse + bit] = PRESSED
        for vk in down:
            index = space.key_index(vk)
            if index is not None:
                action[index] = PRESSED
    after = len(events) - k
    for event in events[k:]:  # in no frame, but unknown keys pressed there still count
        state.apply(event, space, set(), set())

    group_of = np.cumsum(first) - 1  # each frame's group
    kept = groups if duplicate_frames == "drop" else np.arange(len(ticks))
    duplicates = int(len(ticks) - len(groups))
    return Alignment(
        episode=episode.name, space=space, frames=kept.astype(np.int64), timestamp_ms=ms[kept].astype(np.float64),
        steps=np.arange(len(kept), dtype=np.int64), actions=group_actions[group_of[kept]],
        intervals_ms=np.stack([starts, ends], axis=1)[group_of[kept]],
        raw_events=[group_events[g] for g in group_of[kept]], unknown_keys=state.unknown_keys,
        unknown_buttons=state.unknown_buttons, duplicates=duplicates,
        duplicates_dropped=duplicates if duplicate_frames == "drop" else 0,
        events_before=before, events_after=after)
