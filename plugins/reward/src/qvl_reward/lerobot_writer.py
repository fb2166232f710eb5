"""Writing LeRobot datasets (v3.0 or v2.1) with pyarrow and PyAV: for ``make-data`` and tests.

Videos are H.264 with a keyframe every 2 frames (LeRobot's ``g=2``, for cheap random access).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"


@attrs.frozen
class Recording:
    """One episode to write: its task, camera frames (H x W x 3 uint8) and extra per-frame columns."""

    task: str
    frames: dict[str, list[Any]]
    columns: dict[str, list[Any]] = attrs.field(factory=dict)

    @property
    def length(self) -> int:
        return len(next(iter(self.frames.values())))


def encode_video(path: Path, frames: Sequence[Any], fps: float) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = 2
        stream.options = {"crf": "18", "preset": "veryfast"}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _features(recordings: Sequence[Recording], fps: float) -> dict[str, Any]:
    first = recordings[0]
    features: dict[str, Any] = {}
    for key, frames in first.frames.items():
        h, w = frames[0].shape[:2]
        features[key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                         "info": {"video.fps": fps, "video.height": h, "video.width": w, "video.channels": 3,
                                  "video.codec": "h264", "video.pix_fmt": "yuv420p", "has_audio": False}}
    for key, values in first.columns.items():
        value = values[0]
        shape = [len(value)] if isinstance(value, (list, tuple)) else [1]
        features[key] = {"dtype": "float32", "shape": shape, "names": None}
    for key, dtype in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                       ("index", "int64"), ("task_index", "int64")):
        features[key] = {"dtype": dtype, "shape": [1], "names": None}
    return features


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
        kind = pa.list_(pa.float32()) if isinstance(values[0], (list, tuple)) else pa.float32()
        columns[key] = pa.array(values, kind)
    return pa.table(columns)


def write_dataset(root: Path, recordings: Sequence[Recording], fps: float, *, version: str = "v3.0",
                  splits: dict[str, str] | None = None, episodes_per_file: int = 1000) -> Path:
    """Write ``recordings`` as a LeRobot dataset into the empty folder ``root``.

    Callers go through :func:`qvl.build.build_directory` (temporary folder, marker, rename).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if version not in ("v3.0", "v2.1"):
        raise ValueError(f"version must be 'v3.0' or 'v2.1', got {version!r}")
    tmp = Path(root)
    (tmp / "meta").mkdir(parents=True, exist_ok=True)
    tasks = list(dict.fromkeys(r.task for r in recordings))
    task_index = {t: i for i, t in enumerate(tasks)}
    total_frames = sum(r.length for r in recordings)
    info = {
        "codebase_version": version, "robot_type": "aloha", "total_episodes": len(recordings),
        "total_frames": total_frames, "total_tasks": len(tasks), "chunks_size": 1000, "fps": fps,
        "splits": splits or {"train": f"0:{len(recordings)}"},
        "data_path": V3_DATA_PATH if version == "v3.0" else V2_DATA_PATH,
        "video_path": V3_VIDEO_PATH if version == "v3.0" else V2_VIDEO_PATH,
        "features": _features(recordings, fps),
    }
    cameras = list(recordings[0].frames)
    if version == "v2.1":
        info.update(total_chunks=1, total_videos=len(recordings) * len(cameras))
        first = 0
        episode_lines = []
        for episode, recording in enumerate(recordings):
            path = tmp / V2_DATA_PATH.format(episode_chunk=0, episode_index=episode)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(_frame_table(recording, episode, first, task_index[recording.task], fps), path)
            for camera in cameras:
                encode_video(tmp / V2_VIDEO_PATH.format(episode_chunk=0, video_key=camera, episode_index=episode),
                             recording.frames[camera], fps)
            episode_lines.append(json.dumps({"episode_index": episode, "tasks": [recording.task],
                                             "length": recording.length}))
            first += recording.length
        (tmp / "meta" / "episodes.jsonl").write_text("\n".join(episode_lines) + "\n")
        (tmp / "meta" / "tasks.jsonl").write_text(
            "".join(json.dumps({"task_index": i, "task": t}) + "\n" for i, t in enumerate(tasks)))
    else:
        info.update(data_files_size_in_mb=100, video_files_size_in_mb=500)
        rows = []
        first = 0
        for file_index, start in enumerate(range(0, len(recordings), episodes_per_file)):
            group = list(enumerate(recordings))[start : start + episodes_per_file]
            tables, offset = [], 0.0
            for episode, recording in group:
                tables.append(_frame_table(recording, episode, first, task_index[recording.task], fps))
                duration = recording.length / fps
                row = {"episode_index": episode, "tasks": [recording.task], "length": recording.length,
                       "data/chunk_index": 0, "data/file_index": file_index,
                       "dataset_from_index": first, "dataset_to_index": first + recording.length}
                for camera in cameras:
                    row.update({f"videos/{camera}/chunk_index": 0, f"videos/{camera}/file_index": file_index,
                                f"videos/{camera}/from_timestamp": offset,
                                f"videos/{camera}/to_timestamp": offset + duration})
                row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
                rows.append(row)
                offset += duration
                first += recording.length
            path = tmp / V3_DATA_PATH.format(chunk_index=0, file_index=file_index)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables(tables), path)
            for camera in cameras:
                frames = [f for _, recording in group for f in recording.frames[camera]]
                encode_video(tmp / V3_VIDEO_PATH.format(video_key=camera, chunk_index=0, file_index=file_index),
                             frames, fps)
        episodes_path = tmp / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
        episodes_path.parent.mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), episodes_path)
        pq.write_table(pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                                 "task": pa.array(tasks, pa.string())}), tmp / "meta" / "tasks.parquet")
    (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=2))
    return tmp
