"""LeRobot data sets (v3.0, v2.1): read and write them without the ``lerobot`` package.

Plugins that train on robot trajectories (reward, vqa) share this one reader and writer:

* :class:`LeRobotDataset` reads ``meta/`` (info, episodes, tasks, stats), an episode's frame table
  and its video frames (:meth:`LeRobotDataset.image`), in v3.0, v2.1 and v2.0;
* :func:`write_dataset` writes :class:`Recording` episodes as v3.0 or v2.1 (H.264, ``stats.json``,
  LeRobot's ``tasks.parquet`` layout), and :func:`append_episodes` adds episodes to a data set qvl
  wrote, atomically;
* every bad input raises :class:`LeRobotFormatError` (a :class:`qvl.errors.UserError`) naming the
  file and what was expected; :func:`read_json`, :func:`read_jsonl` and :func:`read_parquet` read
  one file of a data set that way, and :func:`parse_range` reads a split's ``"start:end"``.

pyarrow and PyAV are imported only when a file is read or written, so importing this package is cheap.
pyarrow comes with qvl-core's ``[lerobot]`` extra; without it, importing this package says so.
"""

import qvl.lerobot.extra  # noqa: F401  (first: without pyarrow, says which extra installs it)
from qvl.lerobot.append import append_episodes
from qvl.lerobot.hub import hub_dataset
from qvl.lerobot.layout import (LeRobotFormatError, parse_range, read_json, read_jsonl, read_parquet,
                                write_tasks_parquet)
from qvl.lerobot.reader import Episode, LeRobotDataset, VideoSegment
from qvl.lerobot.recording import Recording
from qvl.lerobot.stats import feature_stats, merge_stats
from qvl.lerobot.video import VideoReader, encode_video
from qvl.lerobot.writer import write_dataset

__all__ = [
    "Episode",
    "LeRobotDataset",
    "LeRobotFormatError",
    "Recording",
    "VideoReader",
    "VideoSegment",
    "append_episodes",
    "encode_video",
    "feature_stats",
    "hub_dataset",
    "merge_stats",
    "parse_range",
    "read_json",
    "read_jsonl",
    "read_parquet",
    "write_dataset",
    "write_tasks_parquet",
]
