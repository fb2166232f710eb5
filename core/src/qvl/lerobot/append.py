"""Adding episodes to a LeRobot data set qvl wrote: the new version is built beside the old one
(unchanged files hard linked) and renamed into place, so an interrupted append changes nothing."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qvl.errors import UserError
from qvl.lerobot.episodes import CHUNKS_SIZE, _jsonl, _Part, _write_meta
from qvl.lerobot.layout import (
    EPISODES_JSONL,
    EPISODES_STATS_JSONL,
    INFO_PATH,
    STATS_PATH,
    TASKS_JSONL,
    TASKS_PARQUET,
    VERSIONS,
    LeRobotFormatError,
    read_json,
    read_jsonl,
    read_parquet,
    read_tasks,
)
from qvl.lerobot.recording import Recording, _check
from qvl.lerobot.stats import STAT_KEYS, merge_stats

if TYPE_CHECKING:
    from qvl.lerobot.reader import LeRobotDataset


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
