"""Where the grasp task's data set lives: a folder the user names, or the synthetic one (predict's
inputs: ``predict_inputs``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qvl.build import SyntheticGenerator

if TYPE_CHECKING:
    from qvl.config import RunConfig


SYNTHETIC = SyntheticGenerator("qvl_grasp.synthetic", write="write_dataset", plugin="qvl-grasp",
                               description="the synthetic OCID-Grasp data set")


def data_root(config: RunConfig, *, create: bool) -> Path:
    """The data set's folder; the embedded one is rendered here the first time it is needed."""
    return SYNTHETIC.root(config, create=create)


def make_data(config: RunConfig) -> Path:
    """Stage ``make-data``: render the synthetic data set (into ``task.data_dir`` when set)."""
    s = config.task.synthetic
    root = SYNTHETIC.make(config)
    scenes = "one object each" if s.scene == "single" else f"{s.objects[0]}-{s.objects[1]} objects each"
    print(f"qvl-grasp: {s.train} train, {s.val} val, {s.test} test images ({scenes}) in OCID-Grasp "
          f"layout: {root}")
    if config.task.data_dir:
        print(f"  train on it with: --set task.data_dir={str(root)!r}")
    return root
