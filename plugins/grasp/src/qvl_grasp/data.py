"""Where the grasp task's data set lives: a folder the user names, or the synthetic one (predict's
inputs: ``predict_inputs``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qvl.config import RunConfig


def synthetic_spec(config: RunConfig) -> Any:
    from qvl_grasp.synthetic import SceneSpec

    s = config.task.synthetic
    return SceneSpec(width=s.width, height=s.height, train=s.train, val=s.val, test=s.test, seed=config.seed,
                     position_jitter=s.position_jitter, orientations=s.orientations, scene=s.scene,
                     objects=tuple(s.objects))


def synthetic_data(config: RunConfig) -> Any:
    from qvl.build import SyntheticData
    from qvl_grasp.synthetic import write_dataset

    spec = synthetic_spec(config)
    return SyntheticData(key=spec.key(), fingerprint=spec.fingerprint(),
                         write=lambda out: write_dataset(out, spec), plugin="qvl-grasp",
                         description="the synthetic OCID-Grasp data set")


def data_root(config: RunConfig, *, create: bool) -> Path:
    """The data set's folder; the embedded one is rendered here the first time it is needed."""
    from qvl.build import data_folder

    return data_folder(config.task.data_dir, synthetic_data(config), create=create)


def make_data(config: RunConfig) -> Path:
    """Stage ``make-data``: render the synthetic data set (into ``task.data_dir`` when set)."""
    from qvl.build import write_synthetic

    spec = synthetic_spec(config)
    root = write_synthetic(data_root(config, create=False), synthetic_data(config))
    scenes = "one object each" if spec.scene == "single" else f"{spec.objects[0]}-{spec.objects[1]} objects each"
    print(f"qvl-grasp: {spec.train} train, {spec.val} val, {spec.test} test images ({scenes}) in OCID-Grasp "
          f"layout: {root}")
    if config.task.data_dir:
        print(f"  train on it with: --set task.data_dir={str(root)!r}")
    return root
