"""The capture format: one folder per recorded episode, read and checked, or written.

An episode folder holds four files::

    video.mp4      the screen recording (H.264, canvas_w x canvas_h, about `fps` frames a second)
    frame_ts.bin   little-endian int64, one QueryPerformanceCounter tick count per video frame, in
                   order; a value may repeat (the grabber wrote the same frame twice)
    events.jsonl   the input, one JSON object a line, in time order:
                   {"ts": 123, "kind": "mousemove", "x": 10, "y": 20}
                   {"ts": 124, "kind": "mouseclick", "x": 10, "y": 20, "buttons": 1}
                   {"ts": 125, "kind": "keydown", "vk": 38}   {"ts": 130, "kind": "keyup", "vk": 38}
    meta.json      {"fps": 10, "canvas_w": 384, "canvas_h": 384, "qpc_freq": 10000000,
                    "offset_ms": 12.5, "instruction": "go to the red box", ...}

Mouse positions are canvas pixels; ``buttons`` is a bit mask (bit 0 left, bit 1 right, bit 2
middle; absent: left). ``vk`` is a Windows virtual-key code; Windows repeats keydown while a key is
held, so a keydown of a key already down changes nothing. Keys other than ``instruction`` in
``meta.json`` (env, seed, success...) are kept as they are.

**Time.** Both clocks count QueryPerformanceCounter ticks, ``qpc_freq`` a second. A frame's time
is ``frame_ts / qpc_freq * 1000`` ms. The input hook's clock is ``offset_ms`` behind the frame
grabber's: an event's time *on the frame clock* is ``ts / qpc_freq * 1000 + offset_ms``, and every
comparison of an event with a frame (:func:`~qvl_vla_flow.alignment.align`) uses that time.

How a frame's action comes from the events: :mod:`qvl_vla_flow.alignment`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from qvl.data import read_lines
from qvl.errors import UserError, unreadable_file

VIDEO_FILE = "video.mp4"
FRAME_TS_FILE = "frame_ts.bin"
EVENTS_FILE = "events.jsonl"
META_FILE = "meta.json"
EPISODE_FILES = (VIDEO_FILE, FRAME_TS_FILE, EVENTS_FILE, META_FILE)

MOUSE_KINDS = ("mousemove", "mouseclick")
KEY_KINDS = ("keydown", "keyup")
KINDS = (*MOUSE_KINDS, *KEY_KINDS)
_LEFT = 1  # a mouseclick without `buttons`


@attrs.frozen
class Event:
    """One checked line of ``events.jsonl``.

    :ivar line: its 1-based line number; ``raw`` the object as it was written.
    :ivar ms: its time on the frame clock (``offset_ms`` applied).
    :ivar buttons: the button mask of a mouseclick (``1``, left, when the line has none).
    """

    line: int
    ts: int
    ms: float
    kind: str
    raw: dict[str, Any] = attrs.field(eq=False, repr=False)
    x: float | None = None
    y: float | None = None
    buttons: int | None = None
    vk: int | None = None


@attrs.frozen(eq=False)
class RecordedEpisode:
    """One episode folder, every file checked (:func:`read_episode`).

    :ivar name: the folder's name.
    :ivar meta: ``meta.json`` as written (including keys this module does not use).
    :ivar frame_ts: the QPC tick of each video frame (int64, duplicates included).
    :ivar frame_ms: the same in ms on the frame clock (float64).
    :ivar num_frames: the video's frame count (equal to ``len(frame_ts)``).
    """

    name: str
    folder: Path
    meta: dict[str, Any]
    fps: float
    canvas_w: int
    canvas_h: int
    qpc_freq: float
    offset_ms: float
    instruction: str
    frame_ts: np.ndarray
    frame_ms: np.ndarray
    events: tuple[Event, ...]
    num_frames: int

    @property
    def video(self) -> Path:
        return self.folder / VIDEO_FILE

    def iter_frames(self, indices: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(index, HxWx3 uint8 RGB array)`` for the wanted frames (default: all), in video order,
        each once: the video is decoded once, front to back, and never further than needed.

        :raises UserError: the video cannot be decoded, or ends before a wanted frame.
        """
        wanted = None if indices is None else {int(i) for i in indices}
        if wanted is not None:
            outside = sorted(i for i in wanted if not 0 <= i < self.num_frames)
            if outside:
                raise IndexError(f"{self.video}: frame {outside[0]} is outside the episode's {self.num_frames} frames")
            if not wanted:
                return
        last = self.num_frames - 1 if wanted is None else max(wanted)
        import av

        decoded = -1
        try:
            with av.open(str(self.video)) as container:
                for n, frame in enumerate(container.decode(video=0)):
                    decoded = n
                    if wanted is None or n in wanted:
                        yield n, frame.to_ndarray(format="rgb24")
                    if n >= last:
                        break
        except (av.FFmpegError, OSError) as exc:
            raise unreadable_file(self.video, "video", exc) from None
        if decoded < last:
            raise UserError(f"{self.video}: only {decoded + 1} of its {self.num_frames} frames could be decoded "
                            f"(frame {decoded + 1} is missing); expected a complete video, truncated or damaged?")

    def decode_frames(self, indices: Sequence[int] | None = None, *, as_pil: bool = False) -> list[Any]:
        """The frames ``indices`` (repeats allowed, in the order asked; default: all) as HxWx3 uint8
        RGB arrays, or PIL images with ``as_pil``; one sequential decode (:meth:`iter_frames`)."""
        order = list(range(self.num_frames)) if indices is None else [int(i) for i in indices]
        frames = dict(self.iter_frames(order))
        if as_pil:
            from PIL import Image

            frames = {n: Image.fromarray(array) for n, array in frames.items()}
        return [frames[n] for n in order]


# -- writing ---------------------------------------------------------------------------------


def write_episode(folder: Path, frames: Sequence[np.ndarray], frame_ts: Sequence[int], events: Sequence[dict],
                  meta: dict) -> None:
    """Write one episode folder in the capture format, atomically.

    Everything is written into a hidden sibling folder that is renamed to ``folder`` at the end, so
    a killed recorder never leaves a folder that looks complete. The video is H.264 (libx264,
    yuv420p) at ``meta["fps"]``, one video frame per entry of ``frame_ts`` (duplicates included).
    Events and meta are written as given (not checked: :func:`read_episode` does that).

    :param frames: HxWx3 uint8 RGB arrays, one per ``frame_ts`` entry, all of one even size.
    :raises UserError: ``folder`` already exists (it is never overwritten).
    :raises ValueError: frames and timestamps that cannot make a video.
    """
    folder = Path(folder)
    if os.path.lexists(folder):
        raise UserError(f"{folder}: already exists; an episode folder is never overwritten, choose another name")
    if len(frames) != len(frame_ts):
        raise ValueError(f"{len(frames)} frames but {len(frame_ts)} timestamps; expected one timestamp per frame")
    if not len(frames):
        raise ValueError("no frames; an episode needs at least one")
    shape = np.asarray(frames[0]).shape
    if len(shape) != 3 or shape[2] != 3 or shape[0] % 2 or shape[1] % 2:
        raise ValueError(f"frame shape {shape}; expected H x W x 3 with even H and W (yuv420p video)")
    fps = meta.get("fps")
    if isinstance(fps, (bool, np.bool_)) or not isinstance(fps, (int, float, np.number)) or not fps > 0:
        raise ValueError(f"meta['fps'] = {fps!r}; expected a frame rate > 0")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.writing-{os.getpid()}-{time.time_ns()}")
    tmp.mkdir()
    try:
        write_video(tmp / VIDEO_FILE, frames, shape, float(fps))
        np.asarray(frame_ts, dtype="<i8").tofile(tmp / FRAME_TS_FILE)
        with open(tmp / EVENTS_FILE, "w", encoding="utf-8") as file:
            for event in events:
                file.write(json.dumps(event, default=_plain) + "\n")
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=_plain), encoding="utf-8")
        if os.path.lexists(folder):  # appeared while we wrote: still never replaced
            raise UserError(f"{folder}: already exists; an episode folder is never overwritten, choose another name")
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as the JSON values they hold (a recorder's np.int64, np.bool_)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def write_video(path: Path, frames: Sequence[np.ndarray], shape: tuple[int, ...], fps: float) -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = shape[0], shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for i, array in enumerate(frames):
            array = np.asarray(array)
            if array.shape != shape or array.dtype != np.uint8:
                raise ValueError(f"frame {i}: shape {array.shape} {array.dtype}; expected {shape} uint8 like frame 0")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


# -- reading ---------------------------------------------------------------------------------


def read_episode(folder: str | Path) -> RecordedEpisode:
    """Read and check one episode folder.

    The video is demuxed (not decoded) to count its frames; a container that says more frames than
    it holds is reported as truncated (decoding errors surface in :meth:`RecordedEpisode.iter_frames`).

    :raises UserError: one line naming the folder's file (and for events the line and field): a
        missing file; ``meta.json`` not an object, missing a key or with a wrongly typed one;
        ``frame_ts.bin`` empty, not a multiple of 8 bytes or decreasing; a video that cannot be
        read, is not canvas-sized or whose frame count differs from ``frame_ts.bin``'s; an event line
        that is not JSON, has an unknown kind or a missing or wrongly typed field, or is earlier than
        the line before it.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder}: no such episode folder; expected a folder with {', '.join(EPISODE_FILES)}")
    for name in EPISODE_FILES:
        if not (folder / name).is_file():
            raise UserError(f"{folder / name}: missing; an episode folder holds {', '.join(EPISODE_FILES)}")
    meta = _read_meta(folder / META_FILE)
    fields = _meta_fields(folder / META_FILE, meta)
    frame_ts = _read_frame_ts(folder / FRAME_TS_FILE)
    num_frames, size = _video_frames(folder / VIDEO_FILE)
    if num_frames != len(frame_ts):
        raise UserError(f"{folder / VIDEO_FILE}: has {num_frames} frames but {FRAME_TS_FILE} has {len(frame_ts)} "
                        "timestamps; expected one timestamp per video frame")
    if size != (fields["canvas_w"], fields["canvas_h"]):
        raise UserError(f"{folder / VIDEO_FILE}: is {size[0]}x{size[1]} but {META_FILE} says canvas_w x canvas_h "
                        f"= {fields['canvas_w']}x{fields['canvas_h']}; expected the video to be the canvas")
    events = _read_events(folder / EVENTS_FILE, fields["qpc_freq"], fields["offset_ms"])
    frame_ms = frame_ts.astype(np.float64) / fields["qpc_freq"] * 1000.0
    return RecordedEpisode(name=folder.name, folder=folder, meta=meta, frame_ts=frame_ts, frame_ms=frame_ms,
                           events=events, num_frames=num_frames, **fields)


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno}); expected an object with "
                        "fps, canvas_w, canvas_h, qpc_freq, offset_ms") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: expected a JSON object with fps, canvas_w, canvas_h, qpc_freq, offset_ms, "
                        f"got {type(meta).__name__}")
    return meta


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _meta_fields(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    def get(key: str, ok: Any, expected: str) -> Any:
        if key not in meta:
            raise UserError(f"{path}: key '{key}' missing; expected {expected}")
        value = meta[key]
        if not ok(value):
            raise UserError(f"{path}: key '{key}' is {value!r:.60}; expected {expected}")
        return value

    positive_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0  # noqa: E731
    instruction = meta.get("instruction", "")
    if not isinstance(instruction, str):
        raise UserError(f"{path}: key 'instruction' is {instruction!r:.60}; expected a string (the task text)")
    return {
        "fps": float(get("fps", lambda v: _is_number(v) and v > 0, "a frame rate > 0")),
        "canvas_w": get("canvas_w", positive_int, "the canvas width in pixels (an integer > 0)"),
        "canvas_h": get("canvas_h", positive_int, "the canvas height in pixels (an integer > 0)"),
        "qpc_freq": get("qpc_freq", lambda v: _is_number(v) and v > 0, "QPC ticks per second (a number > 0)"),
        "offset_ms": float(get("offset_ms", _is_number, "the input clock's offset in ms (a number)")),
        "instruction": instruction,
    }


def _read_frame_ts(path: Path) -> np.ndarray:
    size = path.stat().st_size
    if size == 0:
        raise UserError(f"{path}: empty; expected one little-endian int64 QPC tick count per video frame")
    if size % 8:
        raise UserError(f"{path}: {size} bytes, not a multiple of 8; expected little-endian int64 values "
                        "(one QPC tick count per video frame), truncated?")
    ticks = np.fromfile(path, dtype="<i8").astype(np.int64)
    back = np.flatnonzero(np.diff(ticks) < 0)
    if len(back):
        i = int(back[0]) + 1
        raise UserError(f"{path}: frame {i}'s timestamp {ticks[i]} is before frame {i - 1}'s {ticks[i - 1]}; "
                        "expected non-decreasing QPC ticks (equal values are repeated frames)")
    return ticks


def _video_frames(path: Path) -> tuple[int, tuple[int, int]]:
    """The number of frames (demuxed packets) and the (width, height) of a video."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError(f"{path}: holds no video stream; expected the screen recording")
            stream = container.streams.video[0]
            declared = int(stream.frames or 0)
            size = (stream.codec_context.width, stream.codec_context.height)
            count = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.FFmpegError, OSError) as exc:
        raise unreadable_file(path, "video", exc) from None
    if count == 0:
        raise UserError(f"{path}: holds no frames; expected the screen recording")
    if declared and count < declared:
        raise UserError(f"{path}: holds {count} of the {declared} frames its header declares; truncated video?")
    return count, size


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _read_events(path: Path, qpc_freq: float, offset_ms: float) -> tuple[Event, ...]:
    events: list[Event] = []
    for line in read_lines(path):
        number, row = line.number, line.row
        ts = line.value("ts", _is_int, "an integer QPC tick count")
        kind = line.value("kind", lambda v: v in KINDS, f"one of {', '.join(KINDS)}")
        if events and ts < events[-1].ts:
            raise line.error("ts", f"{ts} is before line {events[-1].line}'s {events[-1].ts}; expected events in "
                                   "time order")
        fields: dict[str, Any] = {}
        if kind in MOUSE_KINDS:
            fields["x"] = float(line.value("x", _is_number, "a canvas x coordinate in pixels (a number)"))
            fields["y"] = float(line.value("y", _is_number, "a canvas y coordinate in pixels (a number)"))
            if kind == "mouseclick":
                fields["buttons"] = (line.value("buttons", lambda v: _is_int(v) and v >= 0,
                                                "a button bit mask (bit 0 left, bit 1 right, bit 2 middle)")
                                     if "buttons" in row else _LEFT)
        else:
            fields["vk"] = line.value("vk", lambda v: _is_int(v) and 0 < v < 256,
                                      "a Windows virtual-key code (an integer 1..255)")
        ms = ts / qpc_freq * 1000.0 + offset_ms
        events.append(Event(line=number, ts=ts, ms=ms, kind=kind, raw=row, **fields))
    return tuple(events)
