"""From nothing to training samples: record -> convert -> features, each step reused when present.

``qvl run vla_flow train`` with the defaults runs whatever is missing, as grasp's ``train``
renders its data; ``record``, ``convert`` and ``features`` are also stages of their own. A
``task.recordings_dir`` or ``task.data_dir`` that a user names and that already holds data is
used as it is (never re-recorded, never overwritten).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import qvl

if TYPE_CHECKING:
    from qvl.config import RunConfig

    from qvl_vla_flow.samples import SplitInfo

SPLITS = ("train", "val", "test")
_opened: dict[str, Any] = {}  # converted folders this process has checked: convert and report once


def recordings(config: RunConfig) -> Path:
    """The recordings folder, recorded first when it is qvl's to write and not there yet."""
    from qvl_vla_flow.record import record, recordings_folder

    folder = recordings_folder(config)
    if config.task.recordings_dir and _has_content(folder):
        return folder
    record(folder, config.task.record, config.task.action_space)  # reuses a complete folder
    return folder


def converted(config: RunConfig) -> tuple[Path, Any]:
    """``(folder, DatasetDict)`` of the converted data set, converting (and recording) when missing."""
    from qvl_vla_flow.convert import convert, data_folder, open_dataset

    if config.task.data_dir and _has_content(Path(config.task.data_dir).expanduser()):
        folder = Path(config.task.data_dir).expanduser()
    else:
        source = recordings(config)
        folder = data_folder(config, source)
        if str(folder) not in _opened:
            convert(source, folder, config.task)
    if str(folder) not in _opened:
        _opened[str(folder)], _ = open_dataset(folder)
    return folder, _opened[str(folder)]


def split_samples(config: RunConfig, split: str) -> qvl.Samples[SplitInfo]:
    """The samples of one split with their features (computed for the whole data set if missing),
    and the training split's action statistics as their info (the baselines' actions)."""
    from qvl_vla_flow.frame_features import build_store
    from qvl_vla_flow.samples import EpisodeTable, SplitInfo, WindowSamples, action_statistics

    if split not in SPLITS:
        raise qvl.UserError(f"vla_flow has the splits {', '.join(SPLITS)}; got {split!r}")
    folder, dataset = converted(config)
    if split not in dataset or len(dataset[split]) == 0:
        raise qvl.UserError(f"{folder}: the converted data set has no {split!r} episodes "
                            f"(record more episodes or change task.val_fraction / task.test_fraction)")
    store = build_store(config, folder, dataset)
    statistics = action_statistics(EpisodeTable(dataset["train"]), config.task.action_space)
    return qvl.Samples(WindowSamples(EpisodeTable(dataset[split]), config.task, store), SplitInfo(statistics))


def features_stage(config: RunConfig) -> None:
    """``qvl run vla_flow features``: record, convert and encode whatever is missing."""
    from qvl_vla_flow.frame_features import build_store

    folder, dataset = converted(config)
    store = build_store(config, folder, dataset)
    print(f"features of {len(store)} {'windows' if config.task.encoding == 'joint' else 'frames'} "
          f"in {store.folder}")


def _has_content(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())
