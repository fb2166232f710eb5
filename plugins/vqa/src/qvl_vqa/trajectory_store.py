"""What every trajectory store is: its trajectories (read once, without frames), the frames they index, and a
fingerprint of the files they were read from."""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from qvl.errors import UserError

from qvl_vqa.trajectory import Trajectory

if TYPE_CHECKING:
    import numpy as np

_FIELDS = tuple(f.name for f in attrs.fields(Trajectory))


class TrajectoryStore:
    """Trajectories (read once, without frames) and the frames they index.

    Pickles small: DataLoader workers get a copy and open the files they read themselves.
    """

    root: Path
    trajectories: list[Trajectory]
    fingerprint: dict[str, Any]  # what the trajectories depend on (paths, sizes, times), to key generated data

    def __len__(self) -> int:
        return len(self.trajectories)

    def by_id(self, id: str) -> Trajectory:
        index = self.__dict__.get("_by_id")
        if index is None:
            index = self.__dict__["_by_id"] = {t.id: t for t in self.trajectories}
        try:
            return index[id]
        except KeyError:
            raise KeyError(f"{self.root}: no trajectory with id {id!r}") from None

    def frames(self, trajectory: Trajectory, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` (in that order; repeats and backwards allowed), [len(indices), H, W, 3] uint8."""
        raise NotImplementedError

    def _check_indices(self, trajectory: Trajectory, indices: Sequence[int], where: str) -> list[int]:
        wanted = [int(i) for i in indices]
        for i in wanted:
            if not 0 <= i < trajectory.num_frames:
                problem = "past the end" if i > 0 else "negative"
                raise UserError(f"{where}: frame index {i} is {problem} of trajectory {trajectory.id!r} "
                                f"(T={trajectory.num_frames}: indices 0..{trajectory.num_frames - 1})")
        return wanted

    # per-process state (open files, ``_``-prefixed) is not pickled; the trajectories travel as
    # compressed tuples: ids and paths repeat long prefixes, and every worker gets a copy
    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        rows = [tuple(getattr(t, name) for name in _FIELDS) for t in self.trajectories]
        state["trajectories"] = zlib.compress(pickle.dumps(rows, pickle.HIGHEST_PROTOCOL), 1)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.trajectories = [Trajectory(*values) for values in pickle.loads(zlib.decompress(state["trajectories"]))]


def file_stats(path: Path) -> dict[str, Any]:
    """Size and modification time of a file, or of all files under a folder (cheap change detection)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [p.stat() for p in files]
    return {"path": str(path.resolve()), "files": len(files), "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}

