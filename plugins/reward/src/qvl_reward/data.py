"""Where the reward task's frames come from: a LeRobot data set folder, or the synthetic one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import qvl
from qvl.build import SyntheticGenerator

if TYPE_CHECKING:
    from qvl.config import RunConfig


SYNTHETIC = SyntheticGenerator("qvl_reward.synthetic", write="write_synthetic", plugin="qvl-reward",
                               description="the synthetic LeRobot v3.0 data set")


# the data set's folder (a user's LeRobot data set, or the synthetic one), and make-data
data_root = SYNTHETIC.root
make_data = SYNTHETIC.make


def open_source(config: RunConfig, root: Path | None = None) -> Any:
    from qvl.lerobot import LeRobotDataset

    return LeRobotDataset(root or data_root(config, create=True), config.task.camera_keys)


def split_frames(config: RunConfig, split: str, *, stride: int | None = None, root: Path | None = None,
                 episodes: list[int] | None = None) -> Any:
    from qvl_reward.frames import RewardFrames, episodes_of_split

    source = open_source(config, root)
    if episodes is None:
        episodes = episodes_of_split(source, split, config.task.val_fraction, config.task.splits)
    return RewardFrames(source, episodes, config.task.label_column, config.task.task_template,
                        stride=stride or config.task.frame_stride)


def num_classes(config: RunConfig) -> int:
    """``task.num_classes``, else the length of the label vectors (info.json, else the first row)."""
    if config.task.num_classes is not None:
        return config.task.num_classes
    source = open_source(config)
    feature = source.features.get(config.task.label_column)
    if feature is not None and feature.get("shape") and int(feature["shape"][0]) > 1:
        return int(feature["shape"][0])
    frames = split_frames(config, "train", stride=10**9)
    if frames.label_width is None:
        raise qvl.UserError(f"task.label_column {config.task.label_column!r} holds scalars, which all map to class 0; "
                         "set task.num_classes (and use a vector label column for real classes)")
    return frames.label_width


_weights: dict[tuple, list[float] | None] = {}


def class_weights(config: RunConfig, classes: int) -> list[float] | None:
    """``task.class_weights``, or inverse class frequencies of the train split (computed once)."""
    key = (str(data_root(config, create=False)), config.task.label_column, classes,
           tuple(config.task.class_weights), config.task.balance_classes)
    if key not in _weights:
        _weights[key] = _class_weights(config, classes)
    return _weights[key]


def _class_weights(config: RunConfig, classes: int) -> list[float] | None:
    if config.task.class_weights:
        if len(config.task.class_weights) != classes:
            raise qvl.UserError(f"task.class_weights has {len(config.task.class_weights)} values for {classes} classes")
        return list(config.task.class_weights)
    if not config.task.balance_classes:
        return None
    labels = split_frames(config, "train").labels
    counts = [max(1, labels.count(c)) for c in range(classes)]
    return [len(labels) / (classes * n) for n in counts]
