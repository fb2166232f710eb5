"""Training frames decoded and resized once, through the core's prepared-sample cache.

Each reward sample is one frame of every camera (three on the synthetic data set), decoded from
H.264 with a seek: the largest cost of a step on the tiny backbone. The frames are resized here to
``task.image_size`` exactly as ``qwen_vl_utils`` resizes them (PIL's default filter), so the
processor sees the same pixels, and kept as uint8 arrays keyed by the data set's files and the
settings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from qvl_reward.frames import RewardFrames

VERSION = 1  # of the preparation below: bump when it changes


class PreparedFrames(Sequence):
    """Samples as :class:`RewardFrames` gives them, with the camera images read from the cache."""

    def __init__(self, frames: RewardFrames, prepared: Any, cameras: int):
        self.frames = frames
        self.prepared = prepared
        self.cameras = cameras

    def __len__(self) -> int:
        return len(self.prepared)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        from PIL import Image

        sample = self.prepared[index]
        images = [Image.fromarray(sample[f"camera_{c}"]) for c in range(self.cameras)]
        return {**{k: v for k, v in sample.items() if not k.startswith("camera_")}, "images": images}


def prepared_frames(frames: RewardFrames, size: tuple[int, int], name: str) -> PreparedFrames:
    """``frames`` with every camera image decoded and resized once (rebuilt when a file or setting changes)."""
    import numpy as np

    from qvl.prepared import files_fingerprint, prepare_samples

    cameras = list(frames.source.camera_keys)

    def prepare(index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        sample = frames[index]
        arrays = {f"camera_{c}": np.asarray(image.convert("RGB").resize(size), dtype=np.uint8)
                  for c, image in enumerate(sample.pop("images"))}
        return arrays, sample

    root = frames.source.root
    fingerprint = {"version": VERSION, "size": list(size), "cameras": cameras,
                   "files": files_fingerprint(p for p in root.rglob("*") if p.is_file() and ".qvl" not in p.name),
                   "refs": json.dumps([attrs.astuple(r) for r in frames.refs])}
    prepared = prepare_samples(len(frames), prepare, fingerprint=fingerprint, name=name)
    return PreparedFrames(frames, prepared, len(cameras))
