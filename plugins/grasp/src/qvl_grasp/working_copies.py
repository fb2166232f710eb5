"""Training images decoded and scaled to the working size once, through the core's prepared-sample cache.

A training step used to decode a 640x480 PNG and scale it down for every sample, every epoch: on
the tiny backbone that was about 40 % of a step. The working copy (twice the model's input size,
see :func:`qvl_grasp.collate._working_copy`) is deterministic, so :func:`qvl.prepared.prepare_samples`
keeps it as uint8 arrays keyed by the source files and the model size; augmentation still runs
per step on it. Unless training rotates its images, the working copy scaled on to the model's size is
kept instead: the image the model sees before colour jitter (scaling it each step was a fifth of the
collation), with the working size its rectangles are measured in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from qvl_grasp.geometry import Grasp
from qvl_grasp.readers import GraspDataset, load_image

VERSION = 3  # of the preparation below: bump when it changes (2: the target's rectangles, the instruction;
# 3: the image at the model's size when training does not rotate)


class WorkingCopies(Sequence):
    """Training samples as the collator reads them: the working copy (``image``; or ``shown_image``, at the
    model's size, and ``working_size``), its grasps and instruction."""

    def __init__(self, prepared: Any):
        self.prepared = prepared

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        from PIL import Image

        sample = self.prepared[index]
        read = {"id": sample["id"], "grasps": [Grasp(**g) for g in sample["grasps"]],
                "instruction": sample.get("instruction"), "mask": None}
        for key in ("image", "shown_image"):
            if key in sample:
                read[key] = Image.fromarray(sample[key])
        if "working_size" in sample:
            read["working_size"] = tuple(sample["working_size"])
        return read


def working_copies(split: GraspDataset, model_size: tuple[int, int], name: str, rotates: bool = True) -> WorkingCopies:
    """The working copies of ``split``'s images, prepared once (rebuilt when a file or the size changes);
    ``rotates``: whether training rotates them (else they are kept at the model's size)."""
    import numpy as np

    from qvl.prepared import files_fingerprint, prepare_samples
    from qvl_grasp.collate import _resized, _working_copy

    records = split.records

    def prepare(index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        record = records[index]
        image, grasps = _working_copy(load_image(record.image_path), list(record.target_grasps), model_size)
        meta = {"id": record.id, "instruction": record.instruction, "grasps": [attrs.asdict(g) for g in grasps]}
        if rotates:
            return {"image": np.asarray(image, dtype=np.uint8)}, meta
        shown = np.asarray(_resized(image, model_size), dtype=np.uint8)
        return {"shown_image": shown}, {**meta, "working_size": list(image.size)}

    labels = json.dumps([[r.id, r.instruction, [attrs.astuple(g) for g in r.target_grasps]] for r in records])
    fingerprint = {"version": VERSION, "model_size": list(model_size), "rotates": rotates,
                   "images": files_fingerprint(r.image_path for r in records), "labels": labels}
    return WorkingCopies(prepare_samples(len(records), prepare, fingerprint=fingerprint, name=name))
