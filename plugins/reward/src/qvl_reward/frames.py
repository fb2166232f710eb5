"""Frame samples of a LeRobot dataset: which frames, their task text and label; images on access."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from qvl.lerobot import LeRobotDataset, LeRobotFormatError, VideoReader, parse_range

from qvl_reward.labels import classes_of, label_of


@attrs.frozen
class FrameRef:
    episode: int
    frame: int
    timestamp: float
    task: str
    label: int | None


@attrs.frozen
class SplitInfo:
    """What scoring needs about a split besides its samples (``qvl.Samples.info``): every frame's
    episode, time, task text and label, read from the frame tables without decoding a video."""

    refs: list[FrameRef]


def episodes_of_split(source: LeRobotDataset, split: str, val_fraction: float,
                      overrides: dict[str, str]) -> list[int]:
    """Episode indices of a split: ``task.splits`` first, then ``info.json``'s splits; a dataset
    with only ``train`` gives its last ``val_fraction`` of episodes to ``val`` (and ``test``)."""
    available = [e.index for e in source.episodes]
    if split in overrides:
        chosen = parse_range(overrides[split], f"task.splits.{split}")
    else:
        chosen = source.split_episodes(split)
        if chosen is None:
            train = source.split_episodes("train") or available
            if split not in ("val", "test"):
                raise LeRobotFormatError(f"{source.info_path}: no split {split!r} in 'splits' "
                                         f"(has {sorted(source.info.get('splits', {}))}); set task.splits")
            held_out = max(1, round(len(train) * val_fraction))
            chosen = train[-held_out:]
        elif split == "train" and source.split_episodes("val") is None and "val" not in overrides:
            held_out = max(1, round(len(chosen) * val_fraction))
            chosen = chosen[:-held_out]
    missing = sorted(set(chosen) - set(available))
    if missing:
        raise LeRobotFormatError(f"split {split!r} names episodes {missing[:5]} that meta/ does not list")
    return chosen


class RewardFrames(Sequence):
    """Frames of some episodes, every ``stride``-th; decoding the cameras when a sample is read."""

    def __init__(self, source: LeRobotDataset, episodes: Sequence[int], label_column: str, task_template: str,
                 stride: int = 1, with_labels: bool = True) -> None:
        self.source = source
        self.label_column = label_column
        self.reader = VideoReader(source.fps)
        self.by_index = {e.index: e for e in source.episodes}
        tasks = source.tasks()
        refs = []
        self.label_width: int | None = None
        for index in episodes:
            episode = self.by_index[index]
            columns = ["timestamp", "task_index"] + ([label_column] if with_labels else [])
            for row in source.frame_table(episode, columns)[::stride]:
                task = tasks.get(row["task_index"], episode.tasks[0] if episode.tasks else "")
                label = None
                if with_labels:
                    value = row[label_column]
                    label = label_of(value)
                    if self.label_width is None:
                        self.label_width = classes_of(value)
                refs.append(FrameRef(episode=index, frame=int(row["frame_index"]), timestamp=float(row["timestamp"]),
                                     task=task_template.format(task=task), label=label))
        self.refs = refs

    @property
    def labels(self) -> list[int | None]:
        return [r.label for r in self.refs]

    def __len__(self) -> int:
        return len(self.refs)

    def images(self, ref: FrameRef) -> list[Any]:
        episode = self.by_index[ref.episode]
        images = []
        for camera in self.source.camera_keys:
            segment = episode.videos[camera]
            try:
                images.append(self.reader.frame(segment.path, segment.from_timestamp + ref.timestamp))
            except LeRobotFormatError as exc:
                raise LeRobotFormatError(f"episode {ref.episode}, frame {ref.frame}, camera {camera!r}: {exc}") \
                    from None
        return images

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        ref = self.refs[index]
        return {"id": f"episode-{ref.episode:06d}/frame-{ref.frame:06d}", "images": self.images(ref),
                "text": ref.task, "label": ref.label, "episode": ref.episode, "frame": ref.frame,
                "timestamp": ref.timestamp}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))
