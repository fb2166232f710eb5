"""Recordings (capture-format episode folders) to the training data set, and back.

:func:`convert` reads every episode folder of a recordings folder (:mod:`qvl_vla_flow.capture`),
aligns its input to its frames and writes a Hugging Face ``datasets.DatasetDict`` (``save_to_disk``)
with the splits ``train``, ``val`` and ``test``, one row per kept frame:

=================  =====================  ===================================================
column             type                   content
=================  =====================  ===================================================
``episode``        string                 the episode folder's name
``step``           int32                  ``0 .. episode_steps-1`` over the kept frames
``frame``          int32                  the frame's index in ``video.mp4``
``timestamp_ms``   float64                its time on the frame clock
``instruction``    string                 ``meta.json``'s instruction ("" when none)
``image``          Image                  the decoded frame, PNG
``action``         Sequence(float32, D)   the action vector (:class:`~qvl_vla_flow.actions.ActionSpace`)
``raw_events``     string                 the JSON list of the frame's events, as recorded
``episode_steps``  int32                  the number of kept frames of the episode
=================  =====================  ===================================================

Beside it: ``action_space.json`` (the vector's layout) and ``convert_report.json`` (episodes and
frames per split, skipped episodes and why, unknown keys, duplicate frames). The folder is written
once by :func:`qvl.build.build_directory` and reused while the recordings' files (names, sizes,
modification times) and the conversion settings are unchanged.

An episode goes to a split by a hash of its name alone, so it keeps its split when others are
added or removed (:func:`split_episodes`).
"""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qvl.data import SPLITS, digest, split_items
from qvl.errors import UserError

from qvl_vla_flow.actions import VK_NAMES, ActionSpace
from qvl_vla_flow.capture import META_FILE, align, read_episode
from qvl_vla_flow.config import VlaFlowConfig

ACTION_SPACE_FILE = "action_space.json"
REPORT_FILE = "convert_report.json"
DATASET_DICT_FILE = "dataset_dict.json"  # what DatasetDict.save_to_disk writes
CONVERT_VERSION = 1  # part of the fingerprint: bump when the rows change for the same recordings
COLUMNS = ("episode", "step", "frame", "timestamp_ms", "instruction", "image", "action", "raw_events",
           "episode_steps")
_PREFIX = "vla_flow convert:"


def features(space: ActionSpace) -> Any:
    """The ``datasets.Features`` of a converted data set (every column typed)."""
    import datasets

    sequence = getattr(datasets, "List", None)
    action = (sequence(datasets.Value("float32"), length=space.dim) if sequence is not None
              else datasets.Sequence(datasets.Value("float32"), length=space.dim))
    return datasets.Features({
        "episode": datasets.Value("string"),
        "step": datasets.Value("int32"),
        "frame": datasets.Value("int32"),
        "timestamp_ms": datasets.Value("float64"),
        "instruction": datasets.Value("string"),
        "image": datasets.Image(),
        "action": action,
        "raw_events": datasets.Value("string"),
        "episode_steps": datasets.Value("int32"),
    })


# -- episodes, splits, fingerprint -----------------------------------------------------------


def episode_folders(recordings: str | Path) -> list[Path]:
    """The episode folders of ``recordings``: its subfolders holding a ``meta.json``, by name.

    Hidden folders (a ``.``-name: an episode still being written) are not episodes.

    :raises UserError: ``recordings`` is not a folder.
    """
    recordings = Path(recordings).expanduser()
    if not recordings.is_dir():
        raise UserError(f"{recordings}: no such recordings folder; expected a folder of episode folders "
                        "(video.mp4, frame_ts.bin, events.jsonl, meta.json each)")
    return sorted((child for child in recordings.iterdir()
                   if child.is_dir() and not child.name.startswith(".") and (child / META_FILE).is_file()),
                  key=lambda child: child.name)


def fingerprint(recordings: str | Path, task: VlaFlowConfig) -> dict[str, Any]:
    """What a converted data set depends on: each episode file's name, size and modification time,
    and the conversion settings."""
    files = []
    for folder in episode_folders(recordings):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stat = path.stat()
            files.append([path.relative_to(folder.parent).as_posix(), stat.st_size, stat.st_mtime_ns])
    return {"convert_version": CONVERT_VERSION, "files": files, "keys": list(task.keys),
            "duplicate_frames": task.duplicate_frames, "val_fraction": task.val_fraction,
            "test_fraction": task.test_fraction}


def split_episodes(names: Sequence[str], val_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    """The episode names by split (``train``, ``val``, ``test``; order kept).

    Each episode goes by a hash of its name alone (:func:`qvl.data.assign_split`): below
    ``test_fraction`` to test, below ``test_fraction + val_fraction`` to val, else train; so an
    episode keeps its split when others come and go. When that leaves train empty, or (with 3
    episodes or more) leaves val or test empty although its fraction is above 0, the episodes are
    instead dealt by rank of that position: the lowest to test, the next to val (at least one
    each), the rest (at least one) to train (``fill_empty``).

    :raises UserError: the fractions leave nothing to train on.
    """
    return split_items(names, val_fraction, test_fraction, fill_empty=True)


# -- converting ------------------------------------------------------------------------------


def convert(recordings: str | Path, out: str | Path, config: VlaFlowConfig, *, force: bool = False) -> dict[str, Any]:
    """Convert the episode folders of ``recordings`` into the data set folder ``out``; the report.

    An episode that fails its checks (:func:`~qvl_vla_flow.capture.read_episode`, decoding) is
    skipped and listed with the reason in the report. ``out`` is reused untouched when it holds a
    conversion of the same recordings with the same settings.

    :raises UserError: no episode folder, none left after the skipped ones, or ``out`` is a
        non-empty folder qvl did not write.
    """
    from qvl.build import build_directory

    recordings, out = Path(recordings).expanduser(), Path(out).expanduser()
    space = config.action_space
    folders = episode_folders(recordings)
    if not folders:
        raise UserError(f"{recordings}: holds no episode folders (subfolders with a {META_FILE}); record some "
                        "with `qvl run vla_flow record` or point at the capture tool's output")
    wanted = fingerprint(recordings, config)

    def build(tmp: Path) -> None:
        report = _write_dataset(folders, tmp, config, space)
        report["recordings"] = str(recordings)
        (tmp / REPORT_FILE).write_text(json.dumps(report, indent=1), encoding="utf-8")

    build_directory(out, build, kind="dataset", fingerprint=wanted, force=force, hint="choose another task.data_dir",
                    info={"plugin": "vla_flow", "recordings": str(recordings)},
                    announce=f"vla_flow: converting {len(folders)} episodes of {recordings} into {out}")
    report = read_report(out)
    print_report(report, out)
    return report


def _write_dataset(folders: Sequence[Path], tmp: Path, config: VlaFlowConfig, space: ActionSpace) -> dict[str, Any]:
    """Each good episode into its own Arrow file (a bad one is skipped whole), then the splits of
    the good ones, saved with ``save_to_disk``."""
    import shutil

    import datasets
    from datasets.arrow_writer import ArrowWriter
    from tqdm.auto import tqdm

    feats = features(space)
    scratch = tmp / "_episodes"
    scratch.mkdir()
    good: dict[str, Path] = {}
    frames_of: dict[str, int] = {}
    skipped: list[dict[str, str]] = []
    unknown: Counter = Counter()
    unknown_buttons: Counter = Counter()
    duplicates = dropped = 0
    for folder in tqdm(folders, desc="vla_flow convert", unit="episode", file=sys.stderr):
        try:
            rows, alignment = _episode_rows(folder, space, config.duplicate_frames)
        except UserError as exc:
            skipped.append({"episode": folder.name, "reason": str(exc)})
            continue
        path = scratch / f"{len(good):06d}.arrow"
        with ArrowWriter(features=feats, path=str(path)) as writer:
            for row in rows:
                writer.write(feats.encode_example(row))
            writer.finalize()
        good[folder.name], frames_of[folder.name] = path, len(rows)
        unknown.update(alignment.unknown_keys)
        unknown_buttons.update(alignment.unknown_buttons)
        duplicates += alignment.duplicates
        dropped += alignment.duplicates_dropped
    if not good:
        reasons = "; ".join(f"{item['episode']}: {item['reason']}" for item in skipped[:3])
        raise UserError(f"none of the {len(folders)} episodes could be converted ({reasons}"
                        f"{'; ...' if len(skipped) > 3 else ''})")
    splits = split_episodes(list(good), config.val_fraction, config.test_fraction)
    dataset = datasets.DatasetDict({
        split: (datasets.concatenate_datasets([datasets.Dataset.from_file(str(good[name])) for name in names])
                if names else datasets.Dataset.from_dict({column: [] for column in COLUMNS}, features=feats))
        for split, names in splits.items()})
    # an empty split still gets one (empty) shard: saved with none, datasets cannot read it back
    dataset.save_to_disk(str(tmp), num_shards={split: 1 for split, names in splits.items() if not names} or None)
    del dataset
    shutil.rmtree(scratch)  # read through memory maps by the data sets above, now dropped
    (tmp / ACTION_SPACE_FILE).write_text(json.dumps(space.to_dict(), indent=1), encoding="utf-8")
    return {
        "episodes": {split: len(names) for split, names in splits.items()},
        "frames": {split: sum(frames_of[name] for name in names) for split, names in splits.items()},
        "episode_names": splits,
        "skipped": skipped,
        "unknown_keys": [{"vk": vk, "hex": f"0x{vk:02X}", "name": VK_NAMES.get(vk), "presses": count}
                         for vk, count in sorted(unknown.items(), key=lambda item: (-item[1], item[0]))],
        "unknown_buttons": {str(bit): count for bit, count in sorted(unknown_buttons.items())},
        "duplicates": {"found": duplicates, "dropped": dropped, "mode": config.duplicate_frames},
        "keys": list(space.keys),
        "action_dim": space.dim,
    }


def _episode_rows(folder: Path, space: ActionSpace, duplicate_frames: str) -> tuple[list[dict[str, Any]], Any]:
    """The rows of one episode (images PNG-encoded), or a UserError when any part of it is bad."""
    from PIL import Image

    episode = read_episode(folder)
    alignment = align(episode, space, duplicate_frames)  # type: ignore[arg-type]
    images = {}
    for index, array in episode.iter_frames(alignment.frames.tolist()):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        images[index] = buffer.getvalue()
    steps = len(alignment)
    rows = [{"episode": episode.name, "step": int(alignment.steps[i]), "frame": int(alignment.frames[i]),
             "timestamp_ms": float(alignment.timestamp_ms[i]), "instruction": episode.instruction,
             "image": {"bytes": images[int(alignment.frames[i])], "path": None},
             "action": alignment.actions[i].tolist(), "raw_events": json.dumps(alignment.raw_events[i]),
             "episode_steps": steps}
            for i in range(steps)]
    return rows, alignment


# -- reading back ----------------------------------------------------------------------------


def _check_converted(folder: Path) -> None:
    missing = [name for name in (DATASET_DICT_FILE, ACTION_SPACE_FILE) if not (folder / name).is_file()]
    if not folder.is_dir() or missing:
        raise UserError(f"{folder}: not a converted vla_flow data set (no {' or '.join(missing) or 'folder'}); "
                        "expected the output of `qvl run vla_flow convert`")


def open_dataset(folder: str | Path) -> tuple[Any, ActionSpace]:
    """``(DatasetDict, ActionSpace)``: the splits (train, val, test) of a converted data set folder
    and the layout of its action vectors (``action_space.json``, :func:`load_action_space`).

    :raises UserError: the folder is not one :func:`convert` wrote.
    """
    import datasets

    folder = Path(folder).expanduser()
    _check_converted(folder)
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (OSError, ValueError) as exc:
        raise UserError(f"{folder}: cannot read the converted data set ({type(exc).__name__}: {exc})") from None
    if not isinstance(loaded, datasets.DatasetDict) or set(loaded) != set(SPLITS):
        raise UserError(f"{folder}: not a converted vla_flow data set; expected the splits {', '.join(SPLITS)}")
    columns = list(loaded["train"].column_names)
    if columns != list(COLUMNS):
        raise UserError(f"{folder}: the data set's columns are {columns}; expected {list(COLUMNS)} (written by "
                        "another version of vla_flow convert? convert again)")
    space = load_action_space(folder)
    length = getattr(loaded["train"].features["action"], "length", None)
    if length != space.dim:
        raise UserError(f"{folder}: action vectors of length {length} but {ACTION_SPACE_FILE} describes {space.dim} "
                        "dimensions; expected the files of one conversion")
    return loaded, space


def load_action_space(folder: str | Path) -> ActionSpace:
    """The action space a converted data set was written with (``action_space.json``)."""
    folder = Path(folder).expanduser()
    _check_converted(folder)
    path = folder / ACTION_SPACE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        space = ActionSpace(tuple(data["keys"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: cannot read the action space ({type(exc).__name__}: {exc}); expected the "
                        "output of `qvl run vla_flow convert`") from None
    if data.get("names") != space.names:
        raise UserError(f"{path}: names {data.get('names')} do not match keys {list(space.keys)}; expected the "
                        "file convert wrote")
    return space


def read_report(folder: str | Path) -> dict[str, Any]:
    """``convert_report.json`` of a converted data set."""
    path = Path(folder).expanduser() / REPORT_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the conversion report ({exc})") from None


def print_report(report: dict[str, Any], folder: Path) -> None:
    """The report in a few lines: totals on stdout, skipped episodes and unknown keys as warnings."""
    episodes, frames = report["episodes"], report["frames"]
    print(f"{_PREFIX} {sum(episodes.values())} episodes, {sum(frames.values())} frames in {folder} ("
          + ", ".join(f"{split} {episodes[split]} episodes / {frames[split]} frames" for split in SPLITS)
          + f"); duplicate frames: {report['duplicates']['found']} found, {report['duplicates']['dropped']} dropped")
    for item in report["skipped"]:
        print(f"{_PREFIX} warning: skipped episode {item['episode']}: {item['reason']}", file=sys.stderr)
    if report["unknown_keys"]:
        keys = ", ".join(f"{item['name'] or '?'} ({item['hex']}) x{item['presses']}" for item in report["unknown_keys"])
        print(f"{_PREFIX} warning: keys outside the vocabulary were pressed and are not in the action vector: "
              f"{keys}; add them to task.keys to learn them", file=sys.stderr)


# -- the CLI stage ---------------------------------------------------------------------------


def _task(config: Any) -> VlaFlowConfig:
    return config.task if hasattr(config, "task") else config


def data_folder(config: Any, recordings: str | Path) -> Path:
    """Where the data set converted from ``recordings`` lives: ``task.data_dir`` when set, else
    ``qvl.cache_dir() / "vla_flow" / "data" / <digest of the recordings and settings>``.

    :param config: a ``RunConfig`` whose ``task`` is a :class:`VlaFlowConfig` (or that task config).
    """
    from qvl.cache import cache_dir

    task = _task(config)
    if task.data_dir:
        return Path(task.data_dir).expanduser()
    return cache_dir() / "vla_flow" / "data" / digest(fingerprint(recordings, task))


def recordings_input(config: Any, input: str | Path | None = None) -> Path:
    """The recordings to convert: ``--input`` when given, else ``task.recordings_dir``, else the
    cache folder ``qvl run vla_flow record`` writes with ``task.record``'s settings, if it exists.

    :param config: a ``RunConfig`` whose ``task`` is a :class:`VlaFlowConfig`.
    :raises UserError: none of those is there.
    """
    source = input or _task(config).recordings_dir
    if source:
        return Path(source).expanduser()
    from qvl_vla_flow.record import recordings_folder

    recorded = recordings_folder(config)
    if recorded.is_dir():
        return recorded
    raise UserError("no recordings to convert: task.recordings_dir is empty and there is no recording of "
                    f"task.record's settings in {recorded}; run `qvl run vla_flow record` first, or pass --input "
                    "(a folder of episode folders)")


def train_hint(config: Any, recordings: str | Path) -> str:
    """The ``--set`` that makes ``qvl run vla_flow train`` read what :func:`convert_stage` wrote.

    With ``task.data_dir`` set, that folder; else the recordings themselves: ``train`` with
    ``task.recordings_dir`` converts only what is missing, so it reuses this conversion (same
    recordings, same settings: the same cache folder, :func:`data_folder`) and, when the recordings
    or the conversion settings change, converts again instead of training on a stale copy.
    """
    import shlex

    task = _task(config)
    if task.data_dir:
        key, folder = "task.data_dir", Path(task.data_dir)
    else:
        key, folder = "task.recordings_dir", Path(recordings)
    return f"--set {key}={shlex.quote(str(folder.expanduser().absolute()))}"


def convert_stage(config: Any, input: str | None = None) -> str:
    """Stage ``convert [--input RECORDINGS]``: the recordings to the training data set.

    Prints (and returns) the ``--set`` that trains on it (:func:`train_hint`): ``convert --input DIR``
    alone changes no setting, so a plain ``qvl run vla_flow train`` would still read
    ``task.recordings_dir`` (empty: Miniworld recordings), not ``DIR``.
    """
    recordings = recordings_input(config, input)
    convert(recordings, data_folder(config, recordings), _task(config))
    hint = train_hint(config, recordings)
    print(f"{_PREFIX} train on it with: qvl run vla_flow train {hint}")
    return hint
