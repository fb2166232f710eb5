"""Trajectories: what the VQA samples are made of (task text, quality label, frames on disk).

Generation reads only these records, never frames; training reads the few frames a sample
indexes, in the DataLoader's workers.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from qvl.errors import UserError

from qvl_vqa.config import QUALITY_LABELS

if TYPE_CHECKING:
    import numpy as np

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


# -- reading a trajectory store ------------------------------------------------------------------

DEFAULT_TABLE = "trajectories.jsonl"
FRAMES_MEMBER = "frames.npy"
OPEN_FILES = 8  # .npz files kept open per process (a sample reads 2-3 trajectories)
_FIELDS = tuple(f.name for f in attrs.fields(Trajectory))
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # a zip member's local file header (30 bytes)


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
        return NpzStore(root, _find_table(root, table), fps=fps)
    raise UserError(f"data_format {data_format!r}: expected 'auto', 'npz' or 'lerobot'")


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


# -- format A: a table of .npz trajectories ------------------------------------------------------


def _find_table(root: Path, table: str) -> Path:
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


def _stat(path: Path) -> dict[str, Any]:
    """Size and modification time of a file, or of all files under a folder (cheap change detection)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [p.stat() for p in files]
    return {"path": str(path.resolve()), "files": len(files), "bytes": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


@attrs.frozen
class _Layout:
    """Where the rows of one ``frames.npy`` are: in the raw file (stored member) or in the member."""

    shape: tuple[int, ...]
    offset: int  # stored: of the first row in the .npz file; compressed: in the uncompressed member
    stored: bool

    @property
    def frame_bytes(self) -> int:
        return self.shape[1] * self.shape[2] * self.shape[3]


def _read_layout(path: Path, archive: zipfile.ZipFile, fh: Any, where: str) -> _Layout:
    """Parse ``frames.npy``'s header (not its data) and check it holds [T, H, W, 3] uint8 frames."""
    import numpy as np
    from numpy.lib import format as npy

    names = archive.namelist()
    if FRAMES_MEMBER not in names:
        arrays = [n.removesuffix(".npy") for n in names]
        raise UserError(f"{path} ({where}): no 'frames' array; expected np.savez(..., frames=[T, H, W, 3] uint8), "
                        f"has {arrays}")
    info = archive.getinfo(FRAMES_MEMBER)
    stored = info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1
    try:
        start = 0
        if stored:  # the member's bytes lie as they are in the file: read them with real seeks
            fh.seek(info.header_offset)
            magic, *_, name_length, extra_length = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
            if magic != b"PK\x03\x04":
                raise ValueError("bad local file header")
            start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
            fh.seek(start)
        with contextlib.nullcontext(fh) if stored else archive.open(FRAMES_MEMBER) as member:
            version = npy.read_magic(member)
            if version == (1, 0):
                shape, fortran, dtype = npy.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, fortran, dtype = npy.read_array_header_2_0(member)
            else:
                raise ValueError(f"npy format version {version}; expected 1.0 or 2.0")
            header_end = member.tell() - start
    except (ValueError, OSError, EOFError, struct.error, zipfile.BadZipFile) as exc:
        raise UserError(f"{path} ({where}): frames.npy is not a readable .npy array ({exc})") from None
    if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
        raise UserError(f"{path} ({where}): 'frames' is {list(shape)} {dtype}; expected [T, H, W, 3] uint8")
    if fortran:
        raise UserError(f"{path} ({where}): 'frames' is stored in Fortran order; expected C order "
                        "(save np.ascontiguousarray(frames))")
    size = header_end + int(np.prod(shape))
    if info.file_size < size:
        raise UserError(f"{path} ({where}): frames.npy is truncated: {info.file_size} bytes, its header "
                        f"{list(shape)} needs {size}")
    return _Layout(shape=tuple(int(s) for s in shape), offset=start + header_end, stored=stored)


class _OpenNpz:
    """One open .npz: the file, its zip directory and where its frames are."""

    def __init__(self, path: Path, where: str) -> None:
        if not path.is_file():
            raise UserError(f"{path} ({where}): no such .npz file")
        self.path = path
        self.fh = open(path, "rb")  # noqa: SIM115 - kept open in the store's LRU, closed on eviction
        try:
            self.archive = zipfile.ZipFile(self.fh)
            self.layout = _read_layout(path, self.archive, self.fh, where)
        except zipfile.BadZipFile as exc:
            self.fh.close()
            raise UserError(f"{path} ({where}): not a readable .npz (zip) file ({exc}); truncated or damaged?") \
                from None
        except BaseException:
            self.fh.close()
            raise

    def rows(self, wanted: list[int], where: str) -> dict[int, bytes]:
        """The bytes of each wanted frame, reading each once, in increasing order."""
        layout, size = self.layout, self.layout.frame_bytes
        rows = {}
        try:
            with contextlib.nullcontext(self.fh) if layout.stored else self.archive.open(FRAMES_MEMBER) as source:
                for i in sorted(set(wanted)):
                    # compressed: ZipExtFile.seek decompresses forward (and restarts to go back): sorted
                    source.seek(layout.offset + i * size)
                    data = source.read(size)
                    if len(data) != size:
                        raise UserError(f"{self.path} ({where}): short read of frame {i} ({len(data)} of {size} "
                                        "bytes); truncated or damaged .npz?")
                    rows[i] = data
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise UserError(f"{self.path} ({where}): cannot read frames ({type(exc).__name__}: {exc}); damaged "
                            ".npz?") from None
        return rows

    def close(self) -> None:
        self.archive.close()
        self.fh.close()


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
        self.fingerprint = {"format": "npz", "table": _stat(self.table), "fps": fps}

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
            opened = _OpenNpz(file, where)
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

    def _open(self, trajectory: Trajectory) -> _OpenNpz:
        # per process: a forked DataLoader worker must not share the parent's file positions
        if self.__dict__.get("_pid") != os.getpid():
            self._files: OrderedDict[Path, _OpenNpz] = OrderedDict()
            self._pid = os.getpid()
        path = Path(trajectory.npz_path or "")
        path = path if path.is_absolute() else self.base / path
        opened = self._files.get(path)
        if opened is None:
            opened = _OpenNpz(path, self._where(trajectory.row))
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


# -- format B: a LeRobot data set ------------------------------------------------------------------


class LeRobotStore(TrajectoryStore):
    """Format B: one trajectory per episode of a LeRobot v3.0 / v2.1 data set, frames from one camera.

    An episode's quality is the last value of its progress column: >= 0.999 successful, <= 0.001
    failure, else suboptimal with that partial success; without the column every episode is successful.
    """

    def __init__(self, root: Path, *, camera_key: str = "", progress_column: str = "progress") -> None:
        from qvl.lerobot import LeRobotDataset

        self.root = Path(root)
        source = LeRobotDataset(self.root, [camera_key] if camera_key else None)
        if not source.video_keys:
            raise UserError(f"{source.info_path}: no video features; a trajectory store needs a camera")
        self.camera = camera_key or source.video_keys[0]
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
        self.fingerprint = {"format": "lerobot", "meta": [_stat(p) for p in meta if p.exists()],
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
