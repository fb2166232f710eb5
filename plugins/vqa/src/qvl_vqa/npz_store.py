"""Format A: a table (JSONL file or datasets folder) of trajectories whose frames are ``.npz`` files."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qvl.errors import UserError

from qvl_vqa.config import QUALITY_LABELS
from qvl_vqa.npz_frames import OpenNpz
from qvl_vqa.trajectory import Trajectory
from qvl_vqa.trajectory_store import TrajectoryStore, file_stats

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np

DEFAULT_TABLE = "trajectories.jsonl"
OPEN_FILES = 8  # .npz files kept open per process (a sample reads 2-3 trajectories)


def find_table(root: Path, table: str) -> Path:
    """The table of the store at ``root``: ``table`` when given, else ``trajectories.jsonl``, else the one
    datasets folder directly under ``root``."""
    if table:
        path = Path(table).expanduser()
        path = path if path.is_absolute() else root / path
        if not path.exists():
            raise UserError(f"{path}: no such trajectory table (task.table); expected a .jsonl file or a "
                            "datasets folder saved with save_to_disk")
        return path
    if (root / DEFAULT_TABLE).is_file():
        return root / DEFAULT_TABLE
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and _is_datasets_folder(p)]
    if len(folders) == 1:
        return folders[0]
    found = f"datasets folders {[p.name for p in folders]}" if folders else "no datasets folder"
    raise UserError(f"{root}: no {DEFAULT_TABLE}, and {found} under it, nor meta/info.json (LeRobot); set "
                    "task.table to the trajectory table (a .jsonl file or a datasets folder)")


def _is_datasets_folder(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


class NpzStore(TrajectoryStore):
    """Format A: a table (JSONL file or datasets folder) of trajectories whose frames are ``.npz`` files.

    Relative ``npz_path`` values are relative to the folder holding the table (the ``.jsonl`` file's
    folder, or the datasets folder's parent).
    """

    def __init__(self, root: Path, table: Path, *, fps: float = 10.0) -> None:
        self.root = Path(root)
        self.table = Path(table)
        self.base = self.table.parent
        self.jsonl = self.table.is_file()
        rows, self.splits = _read_jsonl(self.table) if self.jsonl else _read_datasets(self.table)
        if not rows:
            raise UserError(f"{self.table}: no trajectories in the table")
        self.trajectories = []
        seen: dict[str, int] = {}
        names: dict[Any, Any] = {}  # equal texts and shapes share one object (large stores)
        for row_number, row in rows:
            trajectory = self._trajectory(row, row_number, fps, names)
            if trajectory.id in seen:
                raise UserError(f"{self._where(row_number)}: id {trajectory.id!r} already used by "
                                f"{self._label(seen[trajectory.id])}; ids must be unique")
            seen[trajectory.id] = row_number
            self.trajectories.append(trajectory)
        self.fingerprint = {"format": "npz", "table": file_stats(self.table), "fps": fps}

    def _label(self, row: int | None) -> str:
        """The line (JSONL, 1-based) or row (datasets, 0-based, per split) of a table row."""
        if self.jsonl:
            return f"line {row}"
        for name, start, stop in self.splits:
            if row is not None and start <= row < stop:
                return f"{f'split {name!r}, ' if name else ''}row {row - start}"
        return f"row {row}"

    def _where(self, row: int | None) -> str:
        return f"{self.table}, {self._label(row)}"

    def _trajectory(self, row: dict[str, Any], number: int, fps: float, names: dict[Any, Any]) -> Trajectory:
        where = self._where(number)

        def text(field: str, required: bool) -> str | None:
            value = row.get(field)
            if value is None or value == "":
                if required:
                    raise UserError(f"{where}: missing required field {field!r}")
                return None
            if not isinstance(value, str):
                raise UserError(f"{where}: field {field!r} is {value!r}; expected a string")
            return value

        npz_path, task = text("npz_path", True), text("task", True)
        quality = text("quality_label", True)
        if quality not in QUALITY_LABELS:
            raise UserError(f"{where}: quality_label {quality!r}; expected one of {list(QUALITY_LABELS)}")
        partial = row.get("partial_success")
        if partial is not None:
            if isinstance(partial, bool) or not isinstance(partial, (int, float)) or not 0.0 <= partial <= 1.0:
                raise UserError(f"{where}: partial_success {partial!r}; expected a number in [0, 1] or null")
            partial = float(partial)
        row_fps = row.get("fps")
        if row_fps is None:
            row_fps = fps
        elif isinstance(row_fps, bool) or not isinstance(row_fps, (int, float)) or row_fps <= 0:
            raise UserError(f"{where}: fps {row_fps!r}; expected a number > 0")
        path = Path(npz_path)
        file = path if path.is_absolute() else self.base / path
        if not file.is_file():
            raise UserError(f"{file} ({where}): no such .npz file (npz_path {npz_path!r}, relative to {self.base})")
        shape = self._shape(row, where, file)
        data_source = text("data_source", False) or self.root.name
        trajectory_id = row.get("id")
        trajectory_id = npz_path if trajectory_id is None or trajectory_id == "" else str(trajectory_id)
        shape = names.setdefault(shape, shape)
        return Trajectory(id=trajectory_id, task=names.setdefault(task, task),
                          data_source=names.setdefault(data_source, data_source),
                          quality_label=names.setdefault(quality, quality), partial_success=partial,
                          num_frames=shape[0], frames_shape=shape, npz_path=npz_path, fps=float(row_fps), row=number)

    def _shape(self, row: dict[str, Any], where: str, file: Path) -> tuple[int, int, int, int]:
        """[T, H, W, 3] from the row's frames_shape (checked against num_frames), else from the .npz header."""
        num_frames, shape = row.get("num_frames"), row.get("frames_shape")
        if num_frames is not None and (isinstance(num_frames, bool) or not isinstance(num_frames, int)
                                       or num_frames < 1):
            raise UserError(f"{where}: num_frames {num_frames!r}; expected an integer >= 1")
        if shape is None:
            opened = OpenNpz(file, where)
            try:
                shape = opened.layout.shape
            finally:
                opened.close()
        elif (not isinstance(shape, (list, tuple)) or len(shape) != 4 or shape[3] != 3
              or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)):
            raise UserError(f"{where}: frames_shape {shape!r}; expected [T, H, W, 3]")
        if num_frames is not None and num_frames != shape[0]:
            raise UserError(f"{where}: num_frames {num_frames} but frames_shape {list(shape)} ({file}); expected "
                            "num_frames == frames_shape[0]")
        return tuple(int(s) for s in shape)  # type: ignore[return-value]

    def _open(self, trajectory: Trajectory) -> OpenNpz:
        # per process: a forked DataLoader worker must not share the parent's file positions
        if self.__dict__.get("_pid") != os.getpid():
            self._files: OrderedDict[Path, OpenNpz] = OrderedDict()
            self._pid = os.getpid()
        path = Path(trajectory.npz_path or "")
        path = path if path.is_absolute() else self.base / path
        opened = self._files.get(path)
        if opened is None:
            opened = OpenNpz(path, self._where(trajectory.row))
            if opened.layout.shape != trajectory.frames_shape:
                opened.close()
                raise UserError(f"{path} ({self._where(trajectory.row)}): 'frames' is {list(opened.layout.shape)} "
                                f"but the table says frames_shape {list(trajectory.frames_shape)}")
            self._files[path] = opened
            while len(self._files) > OPEN_FILES:
                self._files.popitem(last=False)[1].close()
        else:
            self._files.move_to_end(path)
        return opened

    def frames(self, trajectory: Trajectory, indices: Sequence[int]) -> np.ndarray:
        import numpy as np

        where = self._where(trajectory.row)
        path = Path(trajectory.npz_path or "")
        wanted = self._check_indices(trajectory, indices, f"{path if path.is_absolute() else self.base / path} "
                                                          f"({where})")
        opened = self._open(trajectory)
        rows = opened.rows(wanted, where)
        h, w = trajectory.frames_shape[1:3]
        out = np.empty((len(wanted), h, w, 3), np.uint8)
        for k, i in enumerate(wanted):
            out[k] = np.frombuffer(rows[i], np.uint8).reshape(h, w, 3)
        return out

    def close(self) -> None:
        for opened in self.__dict__.get("_files", {}).values():
            opened.close()
        self.__dict__.pop("_files", None)
        self.__dict__.pop("_pid", None)


def _read_jsonl(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list]:
    from qvl.data import read_objects

    return read_objects(path), []


def _read_datasets(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[str, int, int]]]:
    """Rows of a ``save_to_disk`` folder (a DatasetDict: its splits one after another), numbered from 0."""
    import datasets
    from qvl.errors import unreadable_file

    if not _is_datasets_folder(path):
        raise UserError(f"{path}: not a .jsonl file nor a datasets folder (no dataset_dict.json or state.json); "
                        "expected the trajectory table")
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for damaged folders
        raise unreadable_file(path, "datasets table", exc) from None
    parts = list(loaded.items()) if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    rows, splits, start = [], [], 0
    for name, part in parts:
        columns = [c for c in part.column_names if c in _TABLE_FIELDS]
        for offset, row in enumerate(part.select_columns(columns).to_list()):
            rows.append((start + offset, row))
        splits.append((name, start, start + len(part)))
        start += len(part)
    return rows, splits


_TABLE_FIELDS = ("npz_path", "task", "quality_label", "data_source", "partial_success", "id", "fps",
                 "num_frames", "frames_shape")

