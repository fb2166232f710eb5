"""Where the vqa task's data lives: the trajectory store and the VQA data set generated from it.

Both are built once and reused: ``train`` on a fresh machine writes the synthetic store
(``make-data``) and generates the VQA rows (``generate``) before its first step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import qvl
from qvl.data import digest

if TYPE_CHECKING:
    from qvl.config import RunConfig
    from qvl_vqa.trajectory_store import TrajectoryStore


def store_root(config: RunConfig, *, create: bool) -> Path:
    """``task.repo_id`` (a LeRobot data set on the hub) or ``task.data_dir``, else the synthetic store in
    qvl's cache (written first when ``create``)."""
    from qvl.build import data_folder
    from qvl_vqa.synthetic import synthetic_data

    t = config.task
    return data_folder(t.data_dir, synthetic_data(t.synthetic, config.seed), create=create, repo_id=t.repo_id,
                       revision=t.revision)


def open_trajectories(config: RunConfig, root: Path | None = None) -> TrajectoryStore:
    """The trajectory store at ``root`` (default: the configured one), read with the ``[task]`` settings."""
    from qvl_vqa.store_formats import open_store

    t = config.task
    return open_store(root or store_root(config, create=True), data_format=t.data_format, table=t.table,
                      camera_key=t.camera_key, fps=t.fps, progress_column=t.progress_column)


def existing_dataset(config: RunConfig, folder: Path) -> tuple[Path, TrajectoryStore]:
    """A VQA data set generated before (``predict --input``) and the trajectory store it was generated from."""
    record = folder / "generation_config.json"
    try:
        info = json.loads(record.read_text(encoding="utf-8"))
        root = Path(info["store_root"])
    except (OSError, ValueError, KeyError, TypeError):
        raise qvl.UserError(f"{folder}: not a data set 'qvl run vqa generate' wrote (no readable {record.name} "
                            "with its store_root)") from None
    return folder, open_trajectories(config, root)


def dataset_fingerprint(config: RunConfig, store: TrajectoryStore) -> dict[str, Any]:
    from qvl_vqa.generation_settings import generation_fingerprint

    return generation_fingerprint(config.task, config.seed, str(store.root), store.fingerprint)


def dataset_dir(config: RunConfig, store: TrajectoryStore) -> Path:
    """``task.output_path``, else a folder in qvl's cache named after what the rows depend on."""
    if config.task.output_path:
        return Path(config.task.output_path).expanduser()
    key = digest(dataset_fingerprint(config, store), 10, algorithm="sha1")
    return qvl.cache_dir() / "datasets" / f"vqa-{config.task.num_samples}-s{config.seed}-{key}"


def generated_dataset(config: RunConfig) -> tuple[Path, TrajectoryStore]:
    """The generated VQA data set (generated now when missing or stale) and its trajectory store."""
    from qvl_vqa.generation import build_vqa_dataset

    store = open_trajectories(config)
    target = dataset_dir(config, store)
    build_vqa_dataset(target, store.trajectories, config.task, config.seed,
                      store_root=str(store.root), store_fingerprint=store.fingerprint)
    return target, store


def make_data(config: RunConfig) -> Path:
    """Stage ``make-data``: write the synthetic trajectory store (into ``task.data_dir`` when set)."""
    from qvl.build import refuse_hub_target, write_synthetic
    from qvl_vqa.synthetic import synthetic_data

    refuse_hub_target(config)
    root = write_synthetic(store_root(config, create=False), synthetic_data(config.task.synthetic, config.seed))
    print(f"qvl-vqa: trajectory store: {root}")
    return root


def generate(config: RunConfig) -> Path:
    """Stage ``generate``: the static VQA data set (train/val/test) from the trajectory store."""
    target, store = generated_dataset(config)
    info = json.loads((target / "generation_config.json").read_text(encoding="utf-8"))
    splits = info["counts"]
    sizes = ", ".join(f"{name} {splits[name]['samples']} samples of {splits[name]['trajectories']} trajectories"
                      for name in ("train", "val", "test") if name in splits)
    print(f"qvl-vqa: VQA data set ({sizes}): {target}")
    return target


def stats(config: RunConfig) -> dict[str, Any]:
    """Stage ``stats``: counts by type, strategy, task and source, answer histograms, a PNG."""
    from qvl_vqa.statistics import dataset_statistics

    target, _ = generated_dataset(config)
    return dataset_statistics(target, target / "stats")
