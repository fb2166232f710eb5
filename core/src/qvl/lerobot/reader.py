"""Reading a LeRobot data set (v3.0, v2.1, v2.0) directly with pyarrow and PyAV.

* **v3.0**: ``meta/info.json``, ``meta/tasks.parquet``, ``meta/episodes/chunk-*/file-*.parquet``
  (one row per episode: where its rows and video segments are), ``data/chunk-*/file-*.parquet``
  (many episodes per file) and ``videos/<camera>/chunk-*/file-*.mp4`` (many episodes per file;
  an episode's frame at ``timestamp`` is at ``from_timestamp + timestamp`` in the file).
* **v2.1** (and v2.0): ``meta/info.json``, ``meta/episodes.jsonl``, ``meta/tasks.jsonl``,
  ``data/chunk-XXX/episode_XXXXXX.parquet`` and ``videos/chunk-XXX/<camera>/episode_XXXXXX.mp4``.

Cameras are ``video`` features (frames decoded from the mp4 files) or ``image`` features (each
frame's PNG/JPEG in the data parquet files as ``{"bytes": ..., "path": ...}``, as LeRobot writes
them with ``use_videos=False``); :meth:`LeRobotDataset.image` reads both.

The ``lerobot`` package is not needed (it wants Python >= 3.12 and torch < 2.12, which a qvl
environment may not have); ``tests/test_lerobot_interop.py`` checks that both read the same frames.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from qvl.errors import unreadable_file

from qvl.lerobot.layout import (
    EPISODES_JSONL,
    INFO_PATH,
    STATS_PATH,
    LeRobotFormatError,
    parse_range,
    read_json,
    read_jsonl,
    read_parquet,
    read_tasks,
)
from qvl.lerobot.video import VideoReader


@attrs.frozen
class VideoSegment:
    """Where an episode's video is: the file and the time in it where the episode starts."""

    path: Path
    from_timestamp: float = 0.0


@attrs.frozen
class Episode:
    index: int
    tasks: tuple[str, ...]
    length: int
    data_path: Path
    videos: dict[str, VideoSegment]


class LeRobotDataset:
    """Episodes, frame tables and video frames of one LeRobot data set root.

    :param root: the data set folder (the one holding ``meta/``).
    :param camera_keys: the cameras (video or image features) to use, in this order; ``None``
        means all of them (the video features, then the image features, each sorted).
    """

    def __init__(self, root: str | Path, camera_keys: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise LeRobotFormatError(f"{self.root}: no such data set folder")
        self.info_path = self.root / INFO_PATH
        self.info = read_json(self.info_path)
        if not isinstance(self.info, dict):
            raise LeRobotFormatError(f"{self.info_path}: expected a JSON object")
        self.version = str(self.info.get("codebase_version", ""))
        if not self.version.startswith(("v2.", "v3.")):
            raise LeRobotFormatError(f"{self.info_path}: codebase_version {self.version!r}; "
                                     "qvl.lerobot reads v2.0, v2.1 and v3.0")
        for key in ("fps", "features", "data_path"):
            if key not in self.info:
                raise LeRobotFormatError(f"{self.info_path}: no key {key!r}")
        self.fps = float(self.info["fps"])
        self.features: dict[str, Any] = self.info["features"]
        self.video_keys = tuple(sorted(k for k, v in self.features.items() if v.get("dtype") == "video"))
        self.image_keys = tuple(sorted(k for k, v in self.features.items() if v.get("dtype") == "image"))
        cameras = self.video_keys + self.image_keys
        for key in camera_keys or ():
            if key not in cameras:
                raise LeRobotFormatError(f"{self.info_path}: camera key {key!r} is not a video or image feature of "
                                         f"this data set; cameras: {', '.join(cameras) or 'none'}")
        self.camera_keys = tuple(cameras if camera_keys is None else camera_keys)
        self.episodes = self._read_v3() if self.version.startswith("v3.") else self._read_v2()
        self._tables: OrderedDict[Path, Any] = OrderedDict()
        self._videos: VideoReader | None = None
        self._stills: OrderedDict[tuple[int, str], dict[int, Any]] = OrderedDict()  # image features' cells

    # -- metadata ------------------------------------------------------------------------------

    def _template(self, key: str) -> str:
        if not self.info.get(key):
            raise LeRobotFormatError(f"{self.info_path}: no {key!r} template, which the video features need")
        return str(self.info[key])

    def _read_v3(self) -> list[Episode]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder = self.root / "meta" / "episodes"
        files = sorted(folder.glob("chunk-*/file-*.parquet"))
        if not files:
            raise LeRobotFormatError(f"{folder}: no chunk-*/file-*.parquet episode files")
        tables = []
        for path in files:
            try:  # LeRobot adds per-episode stats/... columns: not needed here, and the bulk of the file
                names = pq.read_schema(path).names
            except Exception:
                names = None  # read_parquet reports the damaged file
            tables.append(read_parquet(path, None if names is None else [n for n in names
                                                                         if not n.startswith("stats/")]))
        rows = pa.concat_tables(tables, promote_options="permissive").to_pylist()
        episodes = []
        for number, row in enumerate(rows):
            where = f"{folder}, episode row {number}"
            try:
                index = int(row["episode_index"])
                where = f"{folder}, episode {index}"
                data_path = self.root / str(self.info["data_path"]).format(
                    chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
                length = int(row["length"])
            except (KeyError, TypeError) as exc:
                raise LeRobotFormatError(f"{where}: expected the columns episode_index, length, data/chunk_index "
                                         f"and data/file_index ({type(exc).__name__}: {exc})") from None
            videos = {}
            for key in (k for k in self.camera_keys if k in self.video_keys):
                try:
                    path = self.root / self._template("video_path").format(
                        video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                        file_index=row[f"videos/{key}/file_index"])
                    videos[key] = VideoSegment(path, float(row[f"videos/{key}/from_timestamp"]))
                except (KeyError, TypeError):
                    raise LeRobotFormatError(f"{where}: expected the columns videos/{key}/chunk_index, "
                                             f"file_index and from_timestamp for camera {key!r}") from None
            episodes.append(Episode(index=index, tasks=tuple(row.get("tasks") or ()), length=length,
                                    data_path=data_path, videos=videos))
        return sorted(episodes, key=lambda e: e.index)

    def _read_v2(self) -> list[Episode]:
        chunks_size = int(self.info.get("chunks_size", 1000))
        path = self.root / EPISODES_JSONL
        episodes = []
        for number, row in enumerate(read_jsonl(path), start=1):
            try:
                index, length = int(row["episode_index"]), int(row["length"])
            except (KeyError, TypeError, ValueError):
                raise LeRobotFormatError(f"{path}, line {number}: expected integer keys 'episode_index' and "
                                         f"'length', has {row}") from None
            chunk = index // chunks_size
            data_path = self.root / str(self.info["data_path"]).format(episode_chunk=chunk, episode_index=index)
            videos = {key: VideoSegment(self.root / self._template("video_path").format(
                episode_chunk=chunk, video_key=key, episode_index=index))
                for key in self.camera_keys if key in self.video_keys}
            episodes.append(Episode(index=index, tasks=tuple(row.get("tasks") or ()), length=length,
                                    data_path=data_path, videos=videos))
        return sorted(episodes, key=lambda e: e.index)

    def episode(self, index: int) -> Episode:
        """The episode with ``episode_index == index``."""
        for episode in self.episodes:
            if episode.index == index:
                return episode
        raise LeRobotFormatError(f"{self.root}: no episode {index} in meta/ (has {len(self.episodes)} episodes)")

    def tasks(self) -> dict[int, str]:
        """task_index -> task text (both the v3.0 ``tasks.parquet`` layouts and v2's ``tasks.jsonl``)."""
        return read_tasks(self.root, self.version)

    def stats(self) -> dict[str, dict[str, Any]] | None:
        """``meta/stats.json`` (per feature: min, max, mean, std, count...), or ``None`` without one."""
        path = self.root / STATS_PATH
        return read_json(path) if path.is_file() else None

    def split_episodes(self, split: str) -> list[int] | None:
        """Episode indices of ``info.json``'s split (``"start:end"``), or None if it has none."""
        spec = (self.info.get("splits") or {}).get(split)
        if spec is None:
            return None
        return parse_range(spec, f"{self.info_path}: splits.{split}")

    # -- frames ----------------------------------------------------------------------------------

    def frame_table(self, episode: Episode, columns: Sequence[str]) -> list[dict[str, Any]]:
        """The episode's rows (sorted by frame_index) with ``columns`` (and ``frame_index``).

        The last few data files stay loaded: a v3.0 file holds many episodes, read one after another.
        """
        import pyarrow.compute as pc

        if episode.data_path not in self._tables:
            table = read_parquet(episode.data_path)
            self._tables[episode.data_path] = table
            while len(self._tables) > 4:
                self._tables.popitem(last=False)
        table = self._tables[episode.data_path]
        columns = list(dict.fromkeys(["frame_index", *columns]))
        missing = [c for c in [*columns, "episode_index"] if c not in table.column_names]
        if missing:
            raise LeRobotFormatError(f"episode {episode.index}: {episode.data_path} has no column "
                                     f"{missing[0]!r}; columns: {', '.join(table.column_names)}")
        rows = table.filter(pc.equal(table["episode_index"], episode.index)).select(columns).to_pylist()
        if not rows:
            raise LeRobotFormatError(f"episode {episode.index}: no rows in {episode.data_path}")
        return sorted(rows, key=lambda r: r["frame_index"])

    def image(self, episode: Episode | int, camera: str, timestamp: float) -> Any:
        """The RGB frame (PIL image) of ``camera`` at ``timestamp`` seconds into the episode."""
        if not isinstance(episode, Episode):
            episode = self.episode(episode)
        if camera in self.image_keys and camera in self.camera_keys:
            return self._still(episode, camera, timestamp)
        if camera not in episode.videos:
            raise LeRobotFormatError(f"{self.info_path}: camera {camera!r} is not one of the camera keys "
                                     f"{list(self.camera_keys)}")
        if self._videos is None:
            self._videos = VideoReader(self.fps)
        segment = episode.videos[camera]
        try:
            return self._videos.frame(segment.path, segment.from_timestamp + timestamp)
        except LeRobotFormatError as exc:
            raise LeRobotFormatError(f"episode {episode.index}, camera {camera!r}, t={timestamp:.3f} s: {exc}") \
                from None

    def _still(self, episode: Episode, camera: str, timestamp: float) -> Any:
        """An image feature's frame: the row at ``round(timestamp * fps)``, its PNG/JPEG bytes (or the
        file its ``path`` names, relative to the data set) decoded."""
        import io

        from PIL import Image

        key = (episode.index, camera)
        if key not in self._stills:
            self._stills[key] = {int(row["frame_index"]): row[camera] for row in self.frame_table(episode, [camera])}
            while len(self._stills) > 8:
                self._stills.popitem(last=False)
        cells = self._stills[key]
        number = int(round(timestamp * self.fps))
        where = f"episode {episode.index}, camera {camera!r}, frame {number}"
        if number not in cells:
            raise LeRobotFormatError(f"{where} (t={timestamp:.3f} s): no such frame in {episode.data_path} "
                                     f"(frames {min(cells)}-{max(cells)})")
        cell = cells[number]
        if isinstance(cell, dict) and cell.get("bytes"):
            source: Any = io.BytesIO(cell["bytes"])
        elif isinstance(cell, dict) and cell.get("path"):
            source = self.root / str(cell["path"])
        else:
            raise LeRobotFormatError(f"{where}: {episode.data_path} holds no image there (expected "
                                     f"{{'bytes': ..., 'path': ...}}, got {type(cell).__name__})")
        try:
            with Image.open(source) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as exc:
            raise unreadable_file(f"{episode.data_path} ({where})", "image", exc) from None

    def close(self) -> None:
        """Close the open video files (they are reopened on demand)."""
        if self._videos is not None:
            self._videos.close()
