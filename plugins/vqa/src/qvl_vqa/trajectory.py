"""A trajectory: what the VQA samples are made of (task text, quality label, frames on disk).

Generation reads only these records, never frames; training reads the few frames a sample
indexes, in the DataLoader's workers.
"""

from __future__ import annotations

import attrs


# the final progress of a trajectory whose table gives no partial_success
DEFAULT_FINAL_PROGRESS = {"successful": 1.0, "suboptimal": 0.5, "failure": 0.0}


@attrs.frozen
class Trajectory:
    """One recorded attempt at a task.

    :ivar id: unique in its store (the table's ``id``, else the ``.npz`` path; LeRobot: ``episode_N``).
    :ivar task: the instruction text.
    :ivar data_source: where it was recorded (``metaworld_train``, ``synthetic``...).
    :ivar quality_label: ``successful``, ``suboptimal`` or ``failure``.
    :ivar partial_success: the progress reached at the last frame, in [0, 1]; None: 1.0 for a
        successful trajectory, 0.5 for a suboptimal one, 0.0 for a failure.
    :ivar num_frames: T.
    :ivar frames_shape: [T, H, W, 3].
    :ivar npz_path: the ``.npz`` file, relative to the store's root (None for LeRobot episodes).
    :ivar episode_index: the LeRobot episode (None for ``.npz`` trajectories).
    :ivar fps: frames per second.
    :ivar row: the line (JSONL, 1-based) or row (datasets, 0-based) of the table, for errors.
    """

    id: str
    task: str
    data_source: str
    quality_label: str
    partial_success: float | None
    num_frames: int
    frames_shape: tuple[int, int, int, int]
    npz_path: str | None = None
    episode_index: int | None = None
    fps: float = 10.0
    row: int | None = None

    @property
    def final_progress(self) -> float:
        if self.quality_label == "successful":
            return 1.0
        if self.partial_success is not None:
            return float(self.partial_success)
        return DEFAULT_FINAL_PROGRESS[self.quality_label]

    def progress(self, frame: int) -> float:
        """Target progress of a frame, in [0, 1]: linear in time up to the final progress."""
        if self.num_frames <= 1:
            return self.final_progress
        return self.final_progress * frame / (self.num_frames - 1)
