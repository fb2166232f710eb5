"""Format B: a LeRobot data set, one trajectory per episode, frames from one camera."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qvl.errors import UserError

from qvl_vqa.trajectory import Trajectory
from qvl_vqa.trajectory_store import TrajectoryStore, file_stats

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np


class LeRobotStore(TrajectoryStore):
    """Format B: one trajectory per episode of a LeRobot v3.0 / v2.1 data set, frames from one camera.

    An episode's quality is the last value of its progress column: >= 0.999 successful, <= 0.001
    failure, else suboptimal with that partial success; without the column every episode is successful.
    """

    def __init__(self, root: Path, *, camera_key: str = "", progress_column: str = "progress") -> None:
        from qvl.lerobot import LeRobotDataset

        self.root = Path(root)
        source = LeRobotDataset(self.root, [camera_key] if camera_key else None)
        if not source.camera_keys:
            raise UserError(f"{source.info_path}: no camera (video or image feature); a trajectory store needs one")
        self.camera = camera_key or source.camera_keys[0]
        self.progress_column = progress_column
        tasks = source.tasks()
        last = self._last_progress(source) if progress_column in source.features else {}
        shape = _camera_shape(source, self.camera)
        self.trajectories = []
        for number, episode in enumerate(source.episodes):
            task = episode.tasks[0] if episode.tasks else tasks.get(self._task_index(source, episode), "")
            if not task:
                raise UserError(f"{source.info_path}: episode {episode.index} has no task text")
            value = last.get(episode.index, 1.0)
            quality = "successful" if value >= 0.999 else "failure" if value <= 0.001 else "suboptimal"
            # the column is float32: 6 decimals give back the value that was written
            partial = {"successful": 1.0, "failure": 0.0}.get(quality, round(float(value), 6))
            self.trajectories.append(Trajectory(
                id=f"episode_{episode.index}", task=sys.intern(task), data_source=self.root.name,
                quality_label=quality, partial_success=partial, num_frames=episode.length,
                frames_shape=(episode.length, *shape), episode_index=episode.index, fps=source.fps, row=number))
        self._source, self._pid = source, os.getpid()
        meta = [self.root / "meta" / "info.json", self.root / "meta" / "episodes",
                self.root / "meta" / "episodes.jsonl"]
        self.fingerprint = {"format": "lerobot", "meta": [file_stats(p) for p in meta if p.exists()],
                            "camera": self.camera, "progress_column": progress_column}

    def _last_progress(self, source: Any) -> dict[int, float]:
        """episode -> its progress at the last frame, reading only the needed columns of each data file."""
        from qvl.lerobot import read_parquet

        wanted = {e.index for e in source.episodes}
        last: dict[int, tuple[int, float]] = {}
        for path in dict.fromkeys(e.data_path for e in source.episodes):
            table = read_parquet(path, ["episode_index", "frame_index", self.progress_column])
            columns = [table.column(n).to_pylist() for n in ("episode_index", "frame_index", self.progress_column)]
            for episode, frame, value in zip(*columns):
                if isinstance(value, (list, tuple)):  # a [1] feature
                    value = value[0] if value else None
                if episode not in wanted or value is None:
                    continue
                if episode not in last or frame > last[episode][0]:
                    last[episode] = (frame, float(value))
        return {e: v for e, (_, v) in last.items()}

    @staticmethod
    def _task_index(source: Any, episode: Any) -> int:
        rows = source.frame_table(episode, ["task_index"])
        return int(rows[0]["task_index"])

    def _dataset(self) -> Any:
        from qvl.lerobot import LeRobotDataset

        if self.__dict__.get("_pid") != os.getpid():  # a fresh reader per process: open videos do not fork
            self._source, self._pid = LeRobotDataset(self.root, [self.camera]), os.getpid()
        return self._source

    def frames(self, trajectory: Trajectory, indices: Sequence[int]) -> np.ndarray:
        import numpy as np

        where = f"{self.root} (episode {trajectory.episode_index}, camera {self.camera!r})"
        wanted = self._check_indices(trajectory, indices, where)
        source = self._dataset()
        episode = source.episode(trajectory.episode_index)
        decoded = {}
        for i in sorted(set(wanted)):  # the video decodes forward: ask in order
            decoded[i] = np.asarray(source.image(episode, self.camera, i / source.fps).convert("RGB"))
        return np.stack([decoded[i] for i in wanted])

    def close(self) -> None:
        if "_source" in self.__dict__:
            self._source.close()


def _camera_shape(source: Any, camera: str) -> tuple[int, int, int]:
    """(H, W, 3) of a camera, from info.json (channels first or last, as its names say)."""
    feature = source.features[camera]
    shape, names = list(feature.get("shape") or []), list(feature.get("names") or [])
    if len(shape) != 3:
        raise UserError(f"{source.info_path}: camera {camera!r} has shape {shape}; expected [H, W, 3]")
    if names and names[0] in ("channel", "channels", "c"):
        shape = shape[1:] + shape[:1]
    return int(shape[0]), int(shape[1]), int(shape[2])
