"""Writing new episodes' files: frame tables (parquet), videos (H.264), per-episode statistics, ``meta/``.

:class:`_Part` writes a run of new episodes, into a new data set or after the episodes of an
existing one, in v3.0 (episodes sharing data and video files, ``meta/episodes`` rows with their
statistics) or v2.1 (one file per episode, ``episodes.jsonl`` and ``episodes_stats.jsonl`` rows).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qvl.lerobot.layout import (
    INFO_PATH,
    STATS_PATH,
    TASKS_JSONL,
    TASKS_PARQUET,
    V2_DATA_PATH,
    V2_VIDEO_PATH,
    V3_DATA_PATH,
    V3_EPISODES_PATH,
    V3_VIDEO_PATH,
    write_tasks_parquet,
)
from qvl.lerobot.recording import Recording, _column
from qvl.lerobot.stats import feature_stats, to_json
from qvl.lerobot.video import encode_video

CHUNKS_SIZE = 1000  # files per chunk folder, LeRobot's default


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
