"""The rows of a generated VQA data set as training/evaluation items, frames read on access.

A row holds trajectory references and frame indices; :class:`VqaSamples` reads just those frames
from the trajectory store when the collator first asks for them, i.e. in the DataLoader's worker
processes (or never, when the run keeps the frames as shown).
The object itself is small to pickle: a memory-mapped Arrow table and the store's metadata.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

import qvl

if TYPE_CHECKING:
    from qvl_vqa.trajectory_store import TrajectoryStore

# which row fields describe each shown video, in the order the prompt numbers them
VIDEO_FIELDS = {
    "preference": ("first", "second"),
    "progress": ("",),
    "similarity": ("", "first", "second"),
}
PAIRED = ("preference", "similarity")  # the types whose answer names one of two videos


@attrs.define
class Video:
    """One shown clip: its frames and where they come from.

    ``frames`` (the init argument) may be a callable that reads them: they are read when first asked
    for, so a run that keeps every trajectory's frames as shown (:mod:`qvl_vqa.shown_frames`) never
    opens the trajectory files (half of its data wait).
    """

    _frames: Any  # [n, H, W, 3] uint8, or a callable returning it
    frame_indices: list[int]  # in the trajectory
    fps: float
    trajectory_id: str
    num_frames: int  # of the trajectory

    @property
    def frames(self) -> np.ndarray:
        if callable(self._frames):
            self._frames = self._frames()
        return self._frames

    @property
    def position(self) -> float:
        """Where the last shown frame sits in the trajectory, 0 (first frame) to 1 (last)."""
        return self.frame_indices[-1] / max(1, self.num_frames - 1)


@attrs.frozen
class Item:
    """A row ready for the collator (``swapped``: the two candidate videos are asked in the other order)."""

    row: dict[str, Any]
    videos: list[Video]
    swapped: bool

    @property
    def sample_type(self) -> str:
        return self.row["sample_type"]

    @property
    def answer(self) -> str:
        """The correct answer in the order the videos are shown."""
        answer = self.row["answer"]
        if self.swapped:
            return {"1": "2", "2": "1"}[answer]
        return answer


@attrs.frozen
class SplitInfo:
    """What scoring needs about a split besides its items (``qvl.Samples.info``): where the data set
    is, which split this is, and the train split's mean progress answer (the constant baseline's)."""

    dataset_dir: Path
    split: str
    train_progress_mean: float | None


def _field(prefix: str, name: str) -> str:
    return f"{prefix}_{name}" if prefix else name


class VqaSamples(Sequence):
    """Items of one split of a generated data set.

    :param dataset_dir: the ``datasets`` DatasetDict folder ``qvl run vqa generate`` wrote.
    :param split: ``train``, ``val`` or ``test``.
    :param store: the trajectory store the rows refer to.
    :param both_orders: paired rows (preference, similarity) appear twice, the second time with
        their two candidates swapped (position-debiased evaluation).
    """

    def __init__(self, dataset_dir: str | Path, split: str, store: TrajectoryStore, *,
                 both_orders: bool = False) -> None:
        from datasets import DatasetDict, load_from_disk

        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.store = store
        try:
            splits = load_from_disk(str(self.dataset_dir))
        except FileNotFoundError as exc:
            raise qvl.UserError(f"{self.dataset_dir}: not a generated VQA data set (no datasets folder here); "
                                "write one with 'qvl run vqa generate'") from exc
        if not isinstance(splits, DatasetDict):
            raise qvl.UserError(f"{self.dataset_dir}: one data set, not the train/val/test DatasetDict "
                                "'qvl run vqa generate' writes")
        if split not in splits:
            raise qvl.UserError(f"{self.dataset_dir}: no split {split!r}; it has {sorted(splits)}")
        self.rows = splits[split]
        types = self.rows["sample_type"]
        self._items = [(row, False) for row in range(len(types))]
        if both_orders:
            self._items += [(row, True) for row, kind in enumerate(types) if kind in PAIRED]
            self._items.sort()

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        """``{"id": "<sample_index>" (+ "/swapped"), "item": Item}``: the runner's sample dict."""
        row_index, swapped = self._items[index]
        row = self.rows[row_index]
        videos = [self._video(row, prefix) for prefix in VIDEO_FIELDS[row["sample_type"]]]
        if swapped:
            videos[-2], videos[-1] = videos[-1], videos[-2]
        sample_id = f"{row['sample_index']}/swapped" if swapped else str(row["sample_index"])
        return {"id": sample_id, "item": Item(row=row, videos=videos, swapped=swapped)}

    def _video(self, row: dict[str, Any], prefix: str) -> Video:
        trajectory_id = row[_field(prefix, "trajectory_id")]
        indices = list(row[_field(prefix, "frame_indices")])
        try:
            trajectory = self.store.by_id(trajectory_id)
        except KeyError:
            raise qvl.UserError(f"{self.dataset_dir} ({self.split}, sample {row['sample_index']}): trajectory "
                                f"{trajectory_id!r} is not in the store {self.store.root}; generate the data set "
                                "again from this store") from None
        read = functools.partial(self.store.frames, trajectory, indices)
        if any(not 0 <= i < trajectory.num_frames for i in indices):
            read()  # raises now, naming the file and the index
        return Video(frames=read, frame_indices=indices, fps=trajectory.fps, trajectory_id=trajectory_id,
                     num_frames=trajectory.num_frames)

    def info(self) -> SplitInfo:
        return SplitInfo(dataset_dir=self.dataset_dir, split=self.split, train_progress_mean=self.train_progress_mean())

    def train_progress_mean(self) -> float | None:
        """The mean progress answer of the data set's train split: the constant baseline's answer."""
        from datasets import load_from_disk

        train = load_from_disk(str(self.dataset_dir)).get("train")
        if train is None:
            return None
        answers = [int(a) for kind, a in zip(train["sample_type"], train["answer"]) if kind == "progress"]
        return sum(answers) / len(answers) if answers else None
