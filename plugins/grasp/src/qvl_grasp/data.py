"""Where the grasp task's data set lives: a folder the user names, or the synthetic one (predict's
inputs: ``predict_inputs``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qvl.config import RunConfig


def synthetic_data(config: RunConfig) -> Any:
    """``task.synthetic`` with the run's seed, written once into qvl's cache."""
    from qvl.build import SyntheticData
    from qvl_grasp.synthetic import dataset_key, fingerprint, write_dataset

    settings, seed = config.task.synthetic, config.seed
    return SyntheticData(key=dataset_key(settings, seed), fingerprint=fingerprint(settings, seed),
                         write=lambda out: write_dataset(out, settings, seed), plugin="qvl-grasp",
                         description="the synthetic OCID-Grasp data set")


def data_root(config: RunConfig, *, create: bool) -> Path:
    """The data set's folder; the embedded one is rendered here the first time it is needed."""
    from qvl.build import data_folder

    return data_folder(config.task.data_dir, synthetic_data(config), create=create)


def make_data(config: RunConfig) -> Path:
    """Stage ``make-data``: render the synthetic data set (into ``task.data_dir`` when set)."""
    from qvl.build import write_synthetic

    s = config.task.synthetic
    root = write_synthetic(data_root(config, create=False), synthetic_data(config))
    scenes = "one object each" if s.scene == "single" else f"{s.objects[0]}-{s.objects[1]} objects each"
    print(f"qvl-grasp: {s.train} train, {s.val} val, {s.test} test images ({scenes}) in OCID-Grasp "
          f"layout: {root}")
    if config.task.data_dir:
        print(f"  train on it with: --set task.data_dir={str(root)!r}")
    return root
