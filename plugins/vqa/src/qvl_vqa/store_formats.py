"""The trajectory store formats a folder can hold (a table of ``.npz`` files, a LeRobot data set) and
:func:`open_store`, which opens the one it holds."""

from __future__ import annotations

from pathlib import Path

from qvl.errors import UserError

from qvl_vqa.lerobot_store import LeRobotStore
from qvl_vqa.npz_store import NpzStore, find_table
from qvl_vqa.trajectory_store import TrajectoryStore


def open_store(root: str | Path, *, data_format: str = "auto", table: str = "", camera_key: str = "",
               fps: float = 10.0, progress_column: str = "progress") -> TrajectoryStore:
    """The trajectory store at ``root``: a table of ``.npz`` trajectories, or a LeRobot data set.

    :param data_format: ``"npz"``, ``"lerobot"`` or ``"auto"`` (LeRobot when ``root/meta/info.json`` exists).
    :param table: npz: the table, a ``.jsonl`` file or a datasets folder, relative to ``root``; empty:
        ``trajectories.jsonl``, else the one datasets folder directly under ``root``.
    :param camera_key: LeRobot: the camera to read; empty: the first camera key.
    :param fps: npz: the frame rate of rows without an ``fps`` field.
    :param progress_column: LeRobot: the per-frame progress column giving each episode's quality.
    :raises UserError: a missing or malformed table, row, ``.npz`` header or LeRobot data set.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: no such trajectory store folder")
    if data_format == "auto":
        data_format = "lerobot" if (root / "meta" / "info.json").is_file() else "npz"
    if data_format == "lerobot":
        return LeRobotStore(root, camera_key=camera_key, progress_column=progress_column)
    if data_format == "npz":
        return NpzStore(root, find_table(root, table), fps=fps)
    raise UserError(f"data_format {data_format!r}: expected 'auto', 'npz' or 'lerobot'")

