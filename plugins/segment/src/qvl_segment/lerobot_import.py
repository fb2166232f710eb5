"""``qvl run segment prepare``: a LeRobot data set with per-frame subtask labels -> ``episodes.jsonl``.

The frame table of such a data set carries a subtask label per frame, as text or as an integer
index (named by ``meta/subtasks.parquet`` or ``meta/subtasks.jsonl`` when the data set has one,
else ``"subtask <i>"``); an empty text, a null or ``-1`` means no subtask. Each contiguous run of
one label becomes a segment. The chosen camera's frames are written as one PNG folder per episode,
the whole output folder through :func:`qvl.build.build_directory` (temporary sibling, marker,
rename), so a user's folder is never overwritten and a killed conversion leaves nothing half done.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qvl.data import digest
from qvl.errors import UserError

CONVERTER_VERSION = 1  # bump when what is written changes: it keys the reuse of a converted folder
SUBTASK_TABLES = ("meta/subtasks.parquet", "meta/subtasks.jsonl")


def convert_lerobot(source: str | Path, target: str | Path, *, camera_key: str | None, subtask_column: str,
                    skill_column: str | None = None, fps: float | None = None) -> Path:
    """Write ``target/episodes.jsonl`` (and ``target/frames/<episode_id>/*.png``) from the LeRobot
    data set at ``source``; a finished conversion with the same inputs is reused.

    :param camera_key: the camera (video or image feature) whose frames are written; ``None``: the first one.
    :param subtask_column: the per-frame label column; its runs become the segments' ``action_text``.
    :param skill_column: a per-frame column giving each segment's ``skill`` (the value most frames
        of the run have); ``None``: the skill is the label text.
    :param fps: the frame rate to write: the data set's (``None``), or a lower one, keeping the
        frames nearest to every ``1/fps`` seconds (long 30 fps episodes shrink; segments follow).
    :returns: ``target``.
    :raises UserError: a missing column or camera, a higher ``fps`` than the data set's, a bad data set.
    """
    from qvl.build import build_directory
    from qvl.lerobot import LeRobotDataset

    source, target = Path(source).expanduser(), Path(target).expanduser()
    dataset = LeRobotDataset(source, [camera_key] if camera_key else None)
    if not dataset.camera_keys:
        raise UserError(f"{source}: the data set has no camera (video or image feature); expected at least one")
    camera = camera_key or dataset.camera_keys[0]
    if not dataset.episodes:
        raise UserError(f"{source}: the data set has no episodes")
    if fps is not None and not 0 < fps <= dataset.fps:
        raise UserError(f"{source}: fps {fps}; expected a frame rate > 0 and at most the data set's {dataset.fps:g}")
    columns = [subtask_column] + ([skill_column] if skill_column else [])
    _check_columns(source, dataset, columns)
    fingerprint = {"format": "segment-lerobot-import", "version": CONVERTER_VERSION, "source": str(source.resolve()),
                   "source_info": digest((source / "meta" / "info.json").read_bytes()), "camera": camera,
                   "subtask_column": subtask_column, "skill_column": skill_column, "fps": fps}
    try:
        return build_directory(target, lambda out: _write(out, dataset, camera, subtask_column, skill_column, fps),
                               kind="dataset", fingerprint=fingerprint, hint="choose another output folder",
                               info={"plugin": "qvl-segment", "source": str(source)},
                               announce=f"qvl-segment: converting {source} ({len(dataset.episodes)} episodes, "
                                        f"camera {camera}) into {target}")
    finally:
        dataset.close()


def _check_columns(source: Path, dataset: Any, columns: Sequence[str]) -> None:
    """Every column must be in the frame table (read from the first data file's schema)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from qvl.errors import unreadable_file

    data_path = dataset.episodes[0].data_path
    try:
        names = pq.read_schema(data_path).names
    except (OSError, pa.ArrowException) as exc:
        raise unreadable_file(data_path, "parquet file", exc) from None
    for column in columns:
        if column not in names:
            raise UserError(f"{source}: the frame table ({data_path.relative_to(source)}) has no column "
                            f"{column!r}; columns: {', '.join(names)}")


def subtask_names(root: Path) -> dict[int, str]:
    """Subtask index -> text from ``meta/subtasks.parquet`` or ``.jsonl``, empty without either.

    The table pairs an integer column (the index) with a text column, whatever their names (as
    ``tasks.parquet`` does, the text may be stored as the pandas index).
    """
    from qvl.lerobot import read_jsonl, read_parquet

    for name in SUBTASK_TABLES:
        path = root / name
        if not path.is_file():
            continue
        rows = read_parquet(path).to_pylist() if path.suffix == ".parquet" else read_jsonl(path)
        names: dict[int, str] = {}
        for number, row in enumerate(rows, start=1):
            index = next((v for k, v in row.items() if isinstance(v, int) and not isinstance(v, bool)), None)
            text = next((v for v in row.values() if isinstance(v, str)), None)
            if index is None or text is None:
                raise UserError(f"{path}, row {number}: expected an integer subtask index and its text, got {row}")
            names[index] = text
        return names
    return {}


def _label(value: Any, names: dict[int, str], unnamed: str = "subtask {}") -> str | None:
    """A frame's label as text; ``None`` for no subtask (null, empty text, a negative index, NaN).
    An index missing from ``names`` is written ``unnamed``."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if math.isnan(value) or value < 0 or not value.is_integer():
            return None
        value = int(value)
    if isinstance(value, int):
        return None if value < 0 else names.get(value, unnamed.format(value))
    if isinstance(value, (list, tuple)):  # a [1] feature stored as a one-element list
        return _label(value[0], names, unnamed) if len(value) == 1 else None
    text = str(value).strip()
    return text or None


def label_runs(labels: Sequence[str | None]) -> list[tuple[int, int, str]]:
    """(first, last, label) of each contiguous run of one label (both ends included); ``None`` ends a run."""
    found: list[tuple[int, int, str]] = []
    for i, label in enumerate(labels):
        if label is None:
            continue
        if found and found[-1][2] == label and found[-1][1] == i - 1:
            found[-1] = (found[-1][0], i, label)
        else:
            found.append((i, i, label))
    return found


def kept_frames(length: int, source_fps: float, fps: float | None) -> list[int]:
    """The frame indices to keep: all of them, or the nearest to every ``1/fps`` seconds."""
    if fps is None or fps >= source_fps:
        return list(range(length))
    step = source_fps / fps
    return sorted({int(k * step + 0.5) for k in range(int((length - 1) / step) + 1)})


def _write(out: Path, dataset: Any, camera: str, subtask_column: str, skill_column: str | None,
           fps: float | None) -> None:
    """Fill the empty folder ``out``: the frames of every episode and ``episodes.jsonl``."""
    names = subtask_names(dataset.root)
    tasks = dataset.tasks()
    columns = ["timestamp", "task_index", subtask_column] + ([skill_column] if skill_column else [])
    lines = []
    for episode in dataset.episodes:
        rows = dataset.frame_table(episode, list(dict.fromkeys(columns)))
        rows = [rows[i] for i in kept_frames(len(rows), dataset.fps, fps)]
        episode_id = f"episode_{episode.index:06d}"
        folder = out / "frames" / episode_id
        folder.mkdir(parents=True)
        frames_paths = []
        for number, row in enumerate(rows):
            name = f"frames/{episode_id}/{number:06d}.png"
            dataset.image(episode, camera, float(row["timestamp"])).save(out / name, compress_level=1)
            frames_paths.append(name)
        labels = [_label(row[subtask_column], names) for row in rows]
        segments = []
        for first, last, label in label_runs(labels):
            skill = label
            if skill_column:
                values = [_label(row[skill_column], {}, "{}") for row in rows[first:last + 1]]
                skill = Counter(v for v in values if v is not None).most_common(1)[0][0] if any(values) else label
            segments.append({"start_frame": first, "end_frame": last, "action_text": label, "skill": skill})
        task = episode.tasks[0] if episode.tasks else tasks.get(int(rows[0]["task_index"]), "")
        lines.append({"episode_id": episode_id, "frames_paths": frames_paths, "task_name": task,
                      "init_scene_text": "", "action_config": segments, "fps": fps or dataset.fps})
    (out / "episodes.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    print(f"qvl-segment: {len(lines)} episodes, {sum(len(line['action_config']) for line in lines)} segments, "
          f"{sum(len(line['frames_paths']) for line in lines)} frames of {camera}")
