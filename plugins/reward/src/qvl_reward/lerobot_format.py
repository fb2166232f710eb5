"""Reading the LeRobot on-disk format directly, with pyarrow and PyAV.

Two layouts are read:

* **v3.0**: ``meta/info.json``, ``meta/tasks.parquet``, ``meta/episodes/chunk-*/file-*.parquet``
  (one row per episode: where its rows and video segments are), ``data/chunk-*/file-*.parquet``
  (many episodes per file) and ``videos/<camera>/chunk-*/file-*.mp4`` (many episodes per file;
  an episode's frame at ``timestamp`` is at ``from_timestamp + timestamp`` in the file).
* **v2.1** (and v2.0): ``meta/info.json``, ``meta/episodes.jsonl``, ``meta/tasks.jsonl``,
  ``data/chunk-XXX/episode_XXXXXX.parquet`` and ``videos/chunk-XXX/<camera>/episode_XXXXXX.mp4``.

The ``lerobot`` package itself is not used: its newest release pins torch<2.11 and
huggingface-hub<0.36, which conflict with transformers 5. Frames are decoded as LeRobot does:
seek to the keyframe before the timestamp, decode forward, keep the frame closest to it, and fail
when none lies within the tolerance.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from qvl import UserError


class LeRobotFormatError(UserError, ValueError):
    """Bad or unsupported LeRobot data; the message names the episode, file and key."""


@attrs.frozen
class VideoSegment:
    path: Path
    from_timestamp: float = 0.0


@attrs.frozen
class Episode:
    index: int
    tasks: tuple[str, ...]
    length: int
    data_path: Path
    videos: dict[str, VideoSegment]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LeRobotFormatError(f"{path}: missing (is {path.parent.parent} a LeRobot dataset root?)") from None
    except json.JSONDecodeError as exc:
        raise LeRobotFormatError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LeRobotFormatError(f"{path}: missing") from None
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise LeRobotFormatError(f"{path}, line {number}: not valid JSON ({exc.msg})") from None
    return rows


def _read_parquet(path: Path, columns: Sequence[str] | None = None) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise LeRobotFormatError(f"{path}: missing parquet file")
    try:
        return pq.read_table(path, columns=list(columns) if columns else None)
    except Exception as exc:  # pyarrow raises several unrelated types for damaged files
        raise LeRobotFormatError(f"{path}: not a readable parquet file ({exc})") from None


class LeRobotDataset:
    """Episodes, frame tables and video frames of one LeRobot dataset root."""

    def __init__(self, root: Path, camera_keys: Sequence[str]) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise LeRobotFormatError(f"{self.root}: no such dataset folder")
        self.info_path = self.root / "meta" / "info.json"
        self.info = _read_json(self.info_path)
        self.version = str(self.info.get("codebase_version", ""))
        if not self.version.startswith(("v2.", "v3.")):
            raise LeRobotFormatError(f"{self.info_path}: codebase_version {self.version!r}; "
                                     "qvl-reward reads v2.0, v2.1 and v3.0")
        self.fps = float(self.info["fps"])
        features = self.info.get("features", {})
        videos = sorted(k for k, v in features.items() if v.get("dtype") == "video")
        for key in camera_keys:
            if key not in videos:
                raise LeRobotFormatError(f"{self.info_path}: camera key {key!r} (task.camera_keys) is not a "
                                         f"video feature of this dataset; video features: {', '.join(videos)}")
        self.camera_keys = tuple(camera_keys)
        self.features = features
        self.episodes = self._read_v3() if self.version.startswith("v3.") else self._read_v2()
        self._tables: OrderedDict[Path, Any] = OrderedDict()

    # -- metadata ------------------------------------------------------------------------------

    def _read_v3(self) -> list[Episode]:
        import pyarrow as pa

        files = sorted((self.root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise LeRobotFormatError(f"{self.root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet episode files")
        table = pa.concat_tables([_read_parquet(f) for f in files], promote_options="permissive")
        rows = table.to_pylist()
        episodes = []
        for row in rows:
            index = int(row["episode_index"])
            data_path = self.root / self.info["data_path"].format(
                chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
            videos = {}
            for key in self.camera_keys:
                try:
                    path = self.root / self.info["video_path"].format(
                        video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                        file_index=row[f"videos/{key}/file_index"])
                    videos[key] = VideoSegment(path, float(row[f"videos/{key}/from_timestamp"]))
                except KeyError as exc:
                    raise LeRobotFormatError(f"episode {index}: meta/episodes has no column {exc.args[0]!r} "
                                             f"for camera {key!r}") from None
            episodes.append(Episode(index=index, tasks=tuple(row.get("tasks") or ()), length=int(row["length"]),
                                    data_path=data_path, videos=videos))
        return sorted(episodes, key=lambda e: e.index)

    def _read_v2(self) -> list[Episode]:
        chunks_size = int(self.info.get("chunks_size", 1000))
        episodes = []
        for row in _read_jsonl(self.root / "meta" / "episodes.jsonl"):
            index = int(row["episode_index"])
            chunk = index // chunks_size
            data_path = self.root / self.info["data_path"].format(episode_chunk=chunk, episode_index=index)
            videos = {key: VideoSegment(self.root / self.info["video_path"].format(
                episode_chunk=chunk, video_key=key, episode_index=index)) for key in self.camera_keys}
            episodes.append(Episode(index=index, tasks=tuple(row.get("tasks") or ()), length=int(row["length"]),
                                    data_path=data_path, videos=videos))
        return sorted(episodes, key=lambda e: e.index)

    def tasks(self) -> dict[int, str]:
        """task_index -> task text."""
        if self.version.startswith("v3."):
            path = self.root / "meta" / "tasks.parquet"
            table = _read_parquet(path)
            names = [c for c in ("task", "__index_level_0__") if c in table.column_names]
            if "task_index" not in table.column_names or not names:
                raise LeRobotFormatError(f"{path}: expected columns 'task_index' and 'task'; "
                                         f"has {table.column_names}")
            return dict(zip(table.column("task_index").to_pylist(), table.column(names[0]).to_pylist()))
        return {int(r["task_index"]): str(r["task"]) for r in _read_jsonl(self.root / "meta" / "tasks.jsonl")}

    def split_episodes(self, split: str) -> list[int] | None:
        """Episode indices of ``info.json``'s split (``"start:end"``), or None if it has none."""
        spec = self.info.get("splits", {}).get(split)
        if spec is None:
            return None
        start, _, end = str(spec).partition(":")
        return list(range(int(start), int(end)))

    # -- frames ----------------------------------------------------------------------------------

    def frame_table(self, episode: Episode, columns: Sequence[str]) -> list[dict[str, Any]]:
        """The episode's rows (sorted by frame_index) with ``columns``."""
        import pyarrow.compute as pc

        if episode.data_path not in self._tables:
            table = _read_parquet(episode.data_path)
            self._tables[episode.data_path] = table
            while len(self._tables) > 4:
                self._tables.popitem(last=False)
        table = self._tables[episode.data_path]
        columns = list(dict.fromkeys(["frame_index", *columns]))
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise LeRobotFormatError(f"episode {episode.index}: {episode.data_path} has no column "
                                     f"{missing[0]!r}; columns: {', '.join(table.column_names)}")
        rows = table.filter(pc.equal(table["episode_index"], episode.index)).select(columns).to_pylist()
        if not rows:
            raise LeRobotFormatError(f"episode {episode.index}: no rows in {episode.data_path}")
        return sorted(rows, key=lambda r: r["frame_index"])


class VideoReader:
    """Frames at timestamps from mp4 files via PyAV; keeps a few containers open."""

    def __init__(self, fps: float, keep_open: int = 8) -> None:
        self.tolerance = 0.5 / fps + 1e-4
        self.keep_open = keep_open
        self._open: OrderedDict[Path, Any] = OrderedDict()

    def _container(self, path: Path) -> Any:
        import av

        if path not in self._open:
            if not path.is_file():
                raise LeRobotFormatError(f"{path}: missing video file")
            try:
                self._open[path] = av.open(str(path))
            except av.FFmpegError as exc:
                raise LeRobotFormatError(f"{path}: not a readable video ({exc})") from None
            while len(self._open) > self.keep_open:
                self._open.popitem(last=False)[1].close()
        return self._open[path]

    def frame(self, path: Path, timestamp: float) -> Any:
        """The RGB frame (PIL image) shown at ``timestamp`` seconds into the file."""
        import av

        container = self._container(path)
        best, best_gap = None, float("inf")
        try:
            stream = container.streams.video[0]
            # lands on the keyframe at or before the timestamp; LeRobot encodes with g=2
            container.seek(max(0, int(timestamp / stream.time_base)), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                gap = abs(float(frame.pts * stream.time_base) - timestamp)
                if gap < best_gap:
                    best, best_gap = frame, gap
                if float(frame.pts * stream.time_base) > timestamp + self.tolerance:
                    break
        except (av.FFmpegError, IndexError) as exc:
            self._open.pop(path, None)
            raise LeRobotFormatError(f"{path}: cannot decode at t={timestamp:.3f} s ({exc})") from None
        if best is None or best_gap > self.tolerance:
            found = "no frame" if best is None else f"nearest frame {best_gap:.3f} s away"
            raise LeRobotFormatError(f"{path}: no frame at t={timestamp:.3f} s ({found}; tolerance "
                                     f"{self.tolerance:.3f} s); truncated or damaged video?")
        return best.to_image()

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()
