"""Writing LeRobot data sets (v3.0 or v2.1) with pyarrow and PyAV, and appending episodes to them.

What is written is what LeRobot 0.6.1 writes and reads (checked by ``tests/test_lerobot_interop.py``):
``tasks.parquet`` indexed by the task text, ``stats.json`` per feature, per-episode statistics
(``stats/...`` columns of ``meta/episodes`` in v3.0, ``episodes_stats.jsonl`` in v2.1), H.264
videos with a keyframe every 2 frames. :func:`write_dataset` fills the empty folder it is given:
callers make that folder with :func:`qvl.build.build_directory` (temporary sibling, marker,
rename). :func:`append_episodes` only changes a data set qvl wrote, and replaces it as a whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from qvl.errors import UserError
from qvl.lerobot.layout import (
    EPISODES_JSONL,
    EPISODES_STATS_JSONL,
    INFO_PATH,
    STATS_PATH,
    TASKS_JSONL,
    TASKS_PARQUET,
    V2_DATA_PATH,
    V2_VIDEO_PATH,
    V3_DATA_PATH,
    V3_EPISODES_PATH,
    V3_VIDEO_PATH,
    VERSIONS,
    LeRobotFormatError,
    read_json,
    read_jsonl,
    read_parquet,
    read_tasks,
    write_tasks_parquet,
)
from qvl.lerobot.stats import STAT_KEYS, feature_stats, merge_stats, to_json
from qvl.lerobot.video import encode_video

if TYPE_CHECKING:
    from qvl.lerobot.reader import LeRobotDataset

CHUNKS_SIZE = 1000  # files per chunk folder, LeRobot's default
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


# -- writing one part --------------------------------------------------------------------------


def _frame_table(recording: Recording, episode: int, first_index: int, task_index: int, fps: float) -> Any:
    import pyarrow as pa

    n = recording.length
    columns: dict[str, Any] = {
        "timestamp": pa.array([i / fps for i in range(n)], pa.float32()),
        "frame_index": pa.array(range(n), pa.int64()),
        "episode_index": pa.array([episode] * n, pa.int64()),
        "index": pa.array(range(first_index, first_index + n), pa.int64()),
        "task_index": pa.array([task_index] * n, pa.int64()),
    }
    for key, values in recording.columns.items():
        array = _column(key, values, key)
        kind = pa.from_numpy_dtype(array.dtype)
        # a [d] feature is a fixed-size list, as LeRobot's datasets.List(length=d) stores it
        columns[key] = pa.array(array.tolist(), kind if array.ndim == 1 else pa.list_(kind, array.shape[1]))
    return pa.table(columns)


def _episode_stats(table: Any, recording: Recording) -> dict[str, dict[str, Any]]:
    """Statistics of every feature of one episode, from its frame table and its (unencoded) frames."""
    import numpy as np

    stats = {name: feature_stats(np.asarray(table.column(name).to_pylist())) for name in table.column_names}
    for camera, frames in recording.frames.items():
        stats[camera] = feature_stats(np.stack(frames), image=True)
    return stats


def _fps_value(fps: float) -> int | float:
    return int(fps) if float(fps).is_integer() else float(fps)  # LeRobot's DatasetInfo.fps is an int


class _Part:
    """Writes a run of new episodes (a new data set, or the episodes appended to one)."""

    def __init__(self, root: Path, version: str, fps: float, tasks: dict[str, int], first_episode: int,
                 first_index: int, chunks_size: int) -> None:
        self.root, self.version, self.fps, self.tasks = root, version, fps, tasks
        self.episode, self.index, self.chunks_size = first_episode, first_index, chunks_size
        self.stats: list[dict[str, dict[str, Any]]] = []
        self.episode_rows: list[dict[str, Any]] = []  # v3.0 meta/episodes rows, v2.1 episodes.jsonl rows
        self.stats_rows: list[dict[str, Any]] = []  # v2.1 episodes_stats.jsonl rows

    def _task_index(self, task: str) -> int:
        return self.tasks.setdefault(task, len(self.tasks))

    def write_v2(self, recording: Recording) -> None:
        import pyarrow.parquet as pq

        episode, chunk = self.episode, self.episode // self.chunks_size
        table = _frame_table(recording, episode, self.index, self._task_index(recording.task), self.fps)
        path = self.root / V2_DATA_PATH.format(episode_chunk=chunk, episode_index=episode)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        for camera, frames in recording.frames.items():
            encode_video(self.root / V2_VIDEO_PATH.format(episode_chunk=chunk, video_key=camera,
                                                          episode_index=episode), frames, self.fps)
        stats = _episode_stats(table, recording)
        self.stats.append(stats)
        self.episode_rows.append({"episode_index": episode, "tasks": [recording.task], "length": recording.length})
        self.stats_rows.append({"episode_index": episode, "stats": to_json(stats)})
        self.episode += 1
        self.index += recording.length

    def write_v3(self, group: Sequence[Recording], chunk: int, file: int, meta_position: tuple[int, int]) -> None:
        """Episodes sharing one data file and one video file per camera, at (chunk, file)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables, offset = [], 0.0
        for recording in group:
            table = _frame_table(recording, self.episode, self.index, self._task_index(recording.task), self.fps)
            tables.append(table)
            stats = _episode_stats(table, recording)
            self.stats.append(stats)
            duration = recording.length / self.fps
            row: dict[str, Any] = {"episode_index": self.episode, "tasks": [recording.task],
                                   "length": recording.length, "data/chunk_index": chunk, "data/file_index": file,
                                   "dataset_from_index": self.index,
                                   "dataset_to_index": self.index + recording.length}
            for camera in recording.frames:
                row.update({f"videos/{camera}/chunk_index": chunk, f"videos/{camera}/file_index": file,
                            f"videos/{camera}/from_timestamp": offset,
                            f"videos/{camera}/to_timestamp": offset + duration})
            for key, values in to_json(stats).items():
                row.update({f"stats/{key}/{stat}": value for stat, value in values.items()})
            row.update({"meta/episodes/chunk_index": meta_position[0], "meta/episodes/file_index": meta_position[1]})
            self.episode_rows.append(row)
            offset += duration
            self.episode += 1
            self.index += recording.length
        path = self.root / V3_DATA_PATH.format(chunk_index=chunk, file_index=file)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.concat_tables(tables), path)
        for camera in group[0].frames:
            frames = [f for recording in group for f in recording.frames[camera]]
            encode_video(self.root / V3_VIDEO_PATH.format(video_key=camera, chunk_index=chunk, file_index=file),
                         frames, self.fps)

    def write(self, recordings: Sequence[Recording], episodes_per_file: int, next_file: tuple[int, int],
              meta_position: tuple[int, int]) -> None:
        if self.version == "v2.1":
            for recording in recordings:
                self.write_v2(recording)
            return
        chunk, file = next_file
        for start in range(0, len(recordings), episodes_per_file):
            self.write_v3(recordings[start : start + episodes_per_file], chunk, file, meta_position)
            chunk, file = (chunk + 1, 0) if file + 1 >= self.chunks_size else (chunk, file + 1)

    def write_episodes_meta(self, meta_position: tuple[int, int], schema: Any = None) -> None:
        """The v3.0 meta/episodes file of these episodes (in the schema of the existing ones, if any)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist(self.episode_rows)
        if schema is not None and set(schema.names) <= set(table.column_names):
            try:  # LeRobot loads all meta/episodes files as one datasets.Dataset: one schema
                table = table.select(schema.names).cast(schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                pass
        path = self.root / V3_EPISODES_PATH.format(chunk_index=meta_position[0], file_index=meta_position[1])
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)


def _write_meta(root: Path, info: dict[str, Any], tasks: Mapping[str, int], stats: Mapping[str, Any] | None) -> None:
    if info["codebase_version"].startswith("v3."):
        write_tasks_parquet(root / TASKS_PARQUET, sorted(tasks, key=tasks.__getitem__))
    else:
        (root / TASKS_JSONL).write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                for t, i in sorted(tasks.items(), key=lambda p: p[1])))
    if stats is not None:
        (root / STATS_PATH).write_text(json.dumps(to_json(stats), indent=2))
    (root / INFO_PATH).write_text(json.dumps(info, indent=2))  # last: a folder without it is no data set


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


# -- the public functions ----------------------------------------------------------------------


def write_dataset(root: str | Path, recordings: Sequence[Recording], fps: float, *, version: str = "v3.0",
                  splits: Mapping[str, str] | None = None, episodes_per_file: int = 1000,
                  robot_type: str | None = None) -> Path:
    """Write ``recordings`` as a LeRobot data set into the empty (or missing) folder ``root``.

    Callers that write where a user points go through :func:`qvl.build.build_directory`, which
    hands this function an empty temporary folder and renames it into place with qvl's marker
    (the marker is what :func:`append_episodes` requires).

    :param fps: frames per second of every recording; timestamps are ``frame_index / fps``.
    :param version: ``"v3.0"`` (LeRobot >= 0.4) or ``"v2.1"``.
    :param splits: ``info.json``'s ``splits``, ``{"train": "0:40", "val": "40:50"}``; default all train.
    :param episodes_per_file: v3.0 only: episodes per data file and per video file.
    :returns: ``root``.
    """
    if version not in VERSIONS:
        raise ValueError(f"version must be one of {VERSIONS}, got {version!r}")
    root = Path(root)
    if root.is_file() or (root.is_dir() and any(root.iterdir())):
        raise UserError(f"{root}: expected an empty folder to write the data set into; write through "
                        "qvl.build.build_directory to replace a data set qvl wrote")
    features = _check(recordings, fps)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    tasks: dict[str, int] = {}
    part = _Part(root, version, fps, tasks, 0, 0, CHUNKS_SIZE)
    part.write(recordings, max(1, episodes_per_file), (0, 0), (0, 0))
    cameras = [k for k, v in features.items() if v["dtype"] == "video"]
    info: dict[str, Any] = {
        "codebase_version": version, "robot_type": robot_type, "total_episodes": len(recordings),
        "total_frames": part.index, "total_tasks": len(tasks), "chunks_size": CHUNKS_SIZE, "fps": _fps_value(fps),
        "splits": dict(splits) if splits else {"train": f"0:{len(recordings)}"},
        "data_path": V3_DATA_PATH if version == "v3.0" else V2_DATA_PATH,
        "video_path": V3_VIDEO_PATH if version == "v3.0" else V2_VIDEO_PATH,
        "features": features,
    }
    if version == "v2.1":
        info.update(total_chunks=(len(recordings) - 1) // CHUNKS_SIZE + 1, total_videos=len(recordings) * len(cameras))
        (root / EPISODES_JSONL).write_text(_jsonl(part.episode_rows))
        (root / EPISODES_STATS_JSONL).write_text(_jsonl(part.stats_rows))
    else:
        info.update(data_files_size_in_mb=100, video_files_size_in_mb=500)
        part.write_episodes_meta((0, 0))
    _write_meta(root, info, tasks, merge_stats(part.stats))
    return root


def append_episodes(root: str | Path, recordings: Sequence[Recording], *, splits: Mapping[str, str] | None = None,
                    episodes_per_file: int = 1000) -> Path:
    """Add ``recordings`` as new episodes to the LeRobot data set qvl wrote at ``root``.

    The new episodes get the next episode and frame indices and new data and video files (the
    existing ones are not rewritten); ``meta/`` (episodes, tasks, ``info.json`` totals, merged
    ``stats.json``) is updated. The new version is built beside the old one (unchanged files hard
    linked) and renamed into place by :func:`qvl.build.build_directory`, so an interrupted append
    leaves the old data set as it was.

    :param splits: the new ``info.json`` splits; by default a ``train`` split covering every
        episode grows with them and other splits stay as they are.
    :raises UserError: ``root`` has no qvl marker (a data set qvl did not write is never changed),
        or the recordings' cameras and columns differ from the data set's features.
    """
    from qvl.build import MARKER, build_directory, read_marker
    from qvl.lerobot.reader import LeRobotDataset

    root = Path(root)
    marker = read_marker(root) if root.is_dir() else None
    if marker is None:
        raise UserError(f"{root}: not a data set qvl wrote (no {MARKER}); episodes are only appended to those, "
                        "nothing was changed")
    source = LeRobotDataset(root)
    if source.version not in VERSIONS:
        raise LeRobotFormatError(f"{source.info_path}: codebase_version {source.version!r}; episodes can be "
                                 f"appended to {' and '.join(VERSIONS)}")
    first_episode = 1 + max((e.index for e in source.episodes), default=-1)
    _check(recordings, source.fps, first_episode, (source.features, str(source.info_path)))
    kept = {k: v for k, v in marker.items() if k not in ("kind", "writer", "created", "fingerprint")}
    total = first_episode + len(recordings)
    fingerprint = {"appended_to": marker.get("fingerprint"), "total_episodes": total,
                   "total_frames": int(source.info.get("total_frames", 0)) + sum(r.length for r in recordings)}
    build_directory(root, lambda tmp: _append_into(source, tmp, recordings, splits, max(1, episodes_per_file)),
                    kind=str(marker.get("kind", "dataset")), fingerprint=fingerprint, force=True,
                    info={**kept, "appended_episodes": f"{first_episode}:{total}"})
    return root


REWRITTEN = (INFO_PATH, STATS_PATH, TASKS_PARQUET, TASKS_JSONL, EPISODES_JSONL, EPISODES_STATS_JSONL)


def _link_tree(source: Path, target: Path) -> None:
    """Hard-link the files of ``source`` into ``target`` (copy where links are impossible); the
    ``meta/`` files that are rewritten are left out, so writing them never touches the original."""
    from qvl.build import MARKER

    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source).as_posix()
        if path.is_dir() or relative == MARKER or relative in REWRITTEN:
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, destination)
        except OSError:
            shutil.copy2(path, destination)


def _positions(root: Path, patterns: Sequence[str]) -> tuple[int, int]:
    """The (chunk, file) after the last existing ``chunk-XXX/file-YYY`` among ``patterns``."""
    found = [(-1, -1)]
    for pattern in patterns:
        for path in root.glob(pattern):
            match = re.search(r"chunk-(\d+)/file-(\d+)\.", path.relative_to(root).as_posix())
            if match:
                found.append((int(match.group(1)), int(match.group(2))))
    chunk, file = max(found)
    if chunk < 0:
        return 0, 0
    return (chunk + 1, 0) if file + 1 >= CHUNKS_SIZE else (chunk, file + 1)


def _append_into(source: LeRobotDataset, tmp: Path, recordings: Sequence[Recording], splits: Mapping[str, str] | None,
                 episodes_per_file: int) -> None:
    root, info = source.root, dict(source.info)
    _link_tree(root, tmp)
    (tmp / "meta").mkdir(exist_ok=True)
    old_episodes = len(source.episodes)
    first_episode = 1 + max((e.index for e in source.episodes), default=-1)
    first_index = int(info.get("total_frames", sum(e.length for e in source.episodes)))
    tasks = {text: index for index, text in sorted(read_tasks(root, source.version).items())}
    chunks_size = int(info.get("chunks_size", CHUNKS_SIZE))
    part = _Part(tmp, source.version, source.fps, tasks, first_episode, first_index, chunks_size)
    stats_path = root / STATS_PATH
    old_stats = read_json(stats_path) if stats_path.is_file() else None
    if source.version == "v2.1":
        part.write(recordings, episodes_per_file, (0, 0), (0, 0))
        (tmp / EPISODES_JSONL).write_text((root / EPISODES_JSONL).read_text(encoding="utf-8").rstrip("\n") + "\n"
                                          + _jsonl(part.episode_rows))
        if (root / EPISODES_STATS_JSONL).is_file():
            old_rows = read_jsonl(root / EPISODES_STATS_JSONL)
            (tmp / EPISODES_STATS_JSONL).write_text(_jsonl([*old_rows, *part.stats_rows]))
        cameras = sum(1 for v in info["features"].values() if v.get("dtype") == "video")
        info.update(total_chunks=(first_episode + len(recordings) - 1) // chunks_size + 1,
                    total_videos=int(info.get("total_videos", 0)) + cameras * len(recordings))
    else:
        next_file = _positions(root, ["data/chunk-*/file-*.parquet", "videos/*/chunk-*/file-*.mp4"])
        meta_position = _positions(root, ["meta/episodes/chunk-*/file-*.parquet"])
        existing = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        schema = read_parquet(existing[0]).schema if existing else None
        part.write(recordings, episodes_per_file, next_file, meta_position)
        part.write_episodes_meta(meta_position, schema)
    total = first_episode + len(recordings)
    old_splits = dict(info.get("splits") or {})
    if splits is not None:
        new_splits = dict(splits)
    else:
        new_splits = old_splits
        if old_splits.get("train") in (f"0:{old_episodes}", f"0:{first_episode}"):
            new_splits["train"] = f"0:{total}"
    info.update(total_episodes=int(info.get("total_episodes", old_episodes)) + len(recordings),
                total_frames=part.index, total_tasks=len(tasks), splits=new_splits)
    # without the old statistics the merged ones would be wrong; the data set then has none, as before
    stats = None if old_stats is None else merge_stats([_stats_arrays(old_stats), *part.stats])
    _write_meta(tmp, info, tasks, stats)


def _stats_arrays(stats: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    import numpy as np

    return {key: {stat: np.asarray(values[stat], np.float64) for stat in STAT_KEYS if stat in values} for key, values in stats.items() if isinstance(values, dict)}
