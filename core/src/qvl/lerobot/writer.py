"""Writing LeRobot data sets (v3.0 or v2.1) with pyarrow and PyAV, and appending episodes to them.

What is written is what LeRobot 0.6.1 writes and reads (checked by ``tests/test_lerobot_interop.py``):
``tasks.parquet`` indexed by the task text, ``stats.json`` per feature, per-episode statistics
(``stats/...`` columns of ``meta/episodes`` in v3.0, ``episodes_stats.jsonl`` in v2.1), H.264
videos with a keyframe every 2 frames. :func:`write_dataset` fills the empty folder it is given:
callers make that folder with :func:`qvl.build.build_directory` (temporary sibling, marker,
rename). :func:`append_episodes` (:mod:`qvl.lerobot.append`) only changes a data set qvl wrote, and
replaces it as a whole.

By idea: :mod:`qvl.lerobot.recording` (:class:`Recording`, the checks of what is written),
:mod:`qvl.lerobot.episodes` (the files of new episodes and ``meta/``), this module (a new data
set), :mod:`qvl.lerobot.append` (episodes added to one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qvl.errors import UserError
from qvl.lerobot.episodes import CHUNKS_SIZE, _jsonl, _Part, _write_meta
from qvl.lerobot.layout import (
    EPISODES_JSONL,
    EPISODES_STATS_JSONL,
    V2_DATA_PATH,
    V2_VIDEO_PATH,
    V3_DATA_PATH,
    V3_VIDEO_PATH,
    VERSIONS,
)
from qvl.lerobot.recording import Recording, _check
from qvl.lerobot.stats import merge_stats

__all__ = ["Recording", "write_dataset"]


def _fps_value(fps: float) -> int | float:
    return int(fps) if float(fps).is_integer() else float(fps)  # LeRobot's DatasetInfo.fps is an int


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
