"""What one episode to write is (:class:`Recording`), and checking recordings before anything is written.

A recording's cameras and columns become the data set's ``info.json`` features; every recording of
a write (and of an append: the data set's own features) must have the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from qvl.lerobot.layout import LeRobotFormatError

# written by LeRobot for every frame; the rest of a frame is the caller's columns and cameras
INDEX_COLUMNS = (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                 ("index", "int64"), ("task_index", "int64"))


@attrs.frozen
class Recording:
    """One episode to write: its task, camera frames and per-frame columns.

    :param task: the task text (LeRobot's ``task``; equal texts share a ``task_index``).
    :param frames: camera key -> the episode's frames, H x W x 3 uint8 arrays (even H and W).
    :param columns: name -> per-frame values: numbers (a ``[1]`` feature) or equal-length vectors
        (a ``[d]`` feature, e.g. ``action``); floats are stored as float32, integers as int64,
        booleans as bool.
    """

    task: str
    frames: dict[str, list[Any]]
    columns: dict[str, Any] = attrs.field(factory=dict)

    @property
    def length(self) -> int:
        return len(next(iter(self.frames.values())))


# -- checking what is written ------------------------------------------------------------------


def _column(name: str, values: Any, where: str) -> Any:
    """The values as a numpy array of the dtype LeRobot uses for them."""
    import numpy as np

    array = np.asarray(values)
    if array.dtype.kind == "f":
        array = array.astype(np.float32)
    elif array.dtype.kind in "iu":
        array = array.astype(np.int64)
    elif array.dtype.kind != "b":
        raise LeRobotFormatError(f"{where}: column {name!r} holds {array.dtype} values; expected numbers or "
                                 "booleans, one value or one equal-length vector per frame")
    if array.ndim not in (1, 2):
        raise LeRobotFormatError(f"{where}: column {name!r} has shape {list(array.shape)}; expected one number "
                                 "or one vector per frame")
    return array


def _features(recording: Recording, fps: float, where: str) -> dict[str, Any]:
    """The ``info.json`` features of one recording, checking it is consistent in itself."""
    import numpy as np

    if not recording.frames:
        raise LeRobotFormatError(f"{where}: no cameras; a LeRobot video data set needs at least one")
    length = recording.length
    if length == 0:
        raise LeRobotFormatError(f"{where}: no frames")
    features: dict[str, Any] = {}
    for key, frames in recording.frames.items():
        shapes = {(np.asarray(f).shape, np.asarray(f).dtype) for f in frames}
        if len(frames) != length:
            raise LeRobotFormatError(f"{where}: camera {key!r} has {len(frames)} frames, expected {length} "
                                     "(as many as the first camera)")
        shape, dtype = next(iter(shapes))
        if len(shapes) > 1 or len(shape) != 3 or shape[2] != 3 or dtype != np.uint8:
            raise LeRobotFormatError(f"{where}: camera {key!r} frames are {sorted(map(str, shapes))}; expected "
                                     "H x W x 3 uint8 arrays of one size")
        h, w = shape[:2]
        features[key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                         "info": {"video.height": h, "video.width": w, "video.codec": "h264",
                                  "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "video.fps": fps,
                                  "video.channels": 3, "has_audio": False}}
    for key, values in recording.columns.items():
        if key in features or key in dict(INDEX_COLUMNS) or key == "task":
            raise LeRobotFormatError(f"{where}: column {key!r} clashes with a camera or a column LeRobot writes")
        array = _column(key, values, where)
        if len(array) != length:
            raise LeRobotFormatError(f"{where}: column {key!r} has {len(array)} values, expected {length} "
                                     "(one per frame)")
        features[key] = {"dtype": str(array.dtype), "shape": [1] if array.ndim == 1 else [array.shape[1]],
                         "names": None}
    for key, dtype in INDEX_COLUMNS:
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    return features


def _same_features(features: Mapping[str, Any], expected: Mapping[str, Any], where: str, against: str) -> None:
    def summary(f: Mapping[str, Any]) -> dict[str, tuple[Any, tuple[int, ...]]]:
        return {k: (v.get("dtype"), tuple(v.get("shape") or ())) for k, v in f.items()}

    got, want = summary(features), summary(expected)
    differing = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
    if differing:
        key = differing[0]
        raise LeRobotFormatError(f"{where}: feature {key!r} is {got.get(key, 'missing')}; {against} has "
                                 f"{want.get(key, 'no such feature')} (dtype, shape)")


def _check(recordings: Sequence[Recording], fps: float, first_episode: int = 0,
           expected: tuple[Mapping[str, Any], str] | None = None) -> dict[str, Any]:
    """The features of the recordings, once every one is checked against the first (or ``expected``:
    the features of the data set they are appended to, and the file that lists them)."""
    if not recordings:
        raise LeRobotFormatError("no recordings to write; expected at least one episode")
    reference, against = expected if expected is not None else (None, "recording 0")
    for number, recording in enumerate(recordings):
        current = _features(recording, fps, f"recording {number} (episode {first_episode + number})")
        if reference is None:
            reference = current
        else:
            _same_features(current, reference, f"recording {number} (episode {first_episode + number})", against)
    return dict(reference)
