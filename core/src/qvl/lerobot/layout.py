"""The LeRobot on-disk layout: path templates, the format error, and reading the ``meta/`` files.

Shared by the reader and the writer (which reads a data set back to append to it), so that both
agree on where things are and both report a bad file the same way: the path, the line, row or
episode, and what was expected.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qvl.errors import UserError

V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V3_EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PARQUET = "meta/tasks.parquet"
TASKS_JSONL = "meta/tasks.jsonl"
EPISODES_JSONL = "meta/episodes.jsonl"
EPISODES_STATS_JSONL = "meta/episodes_stats.jsonl"
VERSIONS = ("v3.0", "v2.1")  # what the writer writes; the reader also reads v2.0


class LeRobotFormatError(UserError, ValueError):
    """Bad or unsupported LeRobot data: the message names the file (and line, row or episode) and
    what was expected. A :class:`ValueError` too, for callers that caught the old reward error."""


def read_json(path: Path) -> Any:
    """A JSON file of a data set; missing or malformed is a :class:`LeRobotFormatError` naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LeRobotFormatError(f"{path}: missing (is {path.parent.parent} a LeRobot data set root?)") from None
    except json.JSONDecodeError as exc:
        raise LeRobotFormatError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file; a bad line is a :class:`LeRobotFormatError` naming file and line."""
    from qvl.data.jsonl import read_objects

    return [row for _, row in read_objects(path, LeRobotFormatError)]


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> Any:
    """A pyarrow table; a missing or damaged file is a :class:`LeRobotFormatError` naming it."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise LeRobotFormatError(f"{path}: missing parquet file")
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None)
    except Exception as exc:  # pyarrow raises several unrelated types for damaged files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise LeRobotFormatError(f"{path}: not a readable parquet file ({reason})") from None


def read_tasks(root: Path, version: str) -> dict[int, str]:
    """task_index -> task text, from ``tasks.parquet`` (v3) or ``tasks.jsonl`` (v2).

    LeRobot writes ``tasks.parquet`` from a pandas frame indexed by the task text: the text is a
    column named ``task`` (pandas metadata marks it as the index), beside ``task_index``. Files
    qvl wrote before it matched that have a plain ``task`` column, and a frame saved with an
    unnamed index has ``__index_level_0__``; all three read the same.
    """
    if version.startswith("v3."):
        path = root / TASKS_PARQUET
        table = read_parquet(path)
        names = [c for c in ("task", "__index_level_0__") if c in table.column_names]
        if "task_index" not in table.column_names or not names:
            raise LeRobotFormatError(f"{path}: expected a 'task_index' column and the task text as column or "
                                     f"index 'task'; has {table.column_names}")
        pairs = zip(table.column("task_index").to_pylist(), table.column(names[0]).to_pylist())
        return {int(i): str(t) for i, t in pairs}
    path = root / TASKS_JSONL
    tasks = {}
    for number, row in enumerate(read_jsonl(path), start=1):
        if "task_index" not in row or "task" not in row:
            raise LeRobotFormatError(f"{path}, row {number}: expected keys 'task_index' and 'task', has {sorted(row)}")
        tasks[int(row["task_index"])] = str(row["task"])
    return tasks


def write_tasks_parquet(path: Path, tasks: Sequence[str]) -> None:
    """``tasks.parquet`` as LeRobot writes it (``DataFrame(index=Index(tasks, name="task")).to_parquet``).

    pandas is not a qvl dependency, so the pandas metadata that makes ``task`` the index is
    written by hand; without it ``pd.read_parquet`` gives a RangeIndex and LeRobot's
    ``tasks.loc[task]`` and ``tasks.iloc[i].name`` find no task.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    schema = pa.schema([("task_index", pa.int64()), ("task", pa.string())],
                       metadata={b"pandas": json.dumps(pandas_meta).encode()})
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()),
                      "task": pa.array(list(tasks), pa.string())}, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def parse_range(spec: Any, where: str) -> list[int]:
    """Episode indices of a split written ``"start:end"`` (end excluded), as LeRobot's info.json does."""
    start, sep, end = str(spec).partition(":")
    try:
        if not sep:
            raise ValueError
        return list(range(int(start), int(end)))
    except ValueError:
        raise LeRobotFormatError(f"{where}: expected an episode range 'start:end', got {spec!r}") from None
