"""Every trajectory's frames as the model sees them, made once, through the core's prepared-sample cache.

A clip goes to the model as a list of frames, which qwen-vl-utils resizes every time it is shown
(each frame, then the stack: about 16 ms for four 64x64 frames, 40 % of a default training step).
Each frame is resized on its own, so :func:`shown_frames_cache` makes every frame of every
trajectory once (:func:`qvl.data.frame_lists.shown_frames`, at ``task.image_size`` and the
processor's patch size) and a clip is passed as the array of its frames: the same tensors as the
list (tested), with no resizing per step. Colour jitter changes the frames before they are resized,
so it turns the cache off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

VERSION = 1  # of the preparation below: bump when it changes


class ShownFrames:
    """``frames(trajectory_id, indices)``: the shown frames of a trajectory of one store, or None for
    a trajectory it does not hold."""

    def __init__(self, prepared: Any) -> None:
        self.prepared = prepared

    def frames(self, trajectory_id: str, indices: Sequence[int]) -> Any:
        if trajectory_id not in self.prepared:
            return None
        return self.prepared[trajectory_id]["frames"][list(indices)]


def shown_frames_cache(store: Any, image_size: Sequence[int], processor: Any, backbone_name: str) -> ShownFrames:
    """Every frame of ``store``'s trajectories as shown at ``image_size`` (width, height), one sample
    per trajectory, keyed by the store, the size and the processor."""
    from PIL import Image

    from qvl.data.frame_lists import shown_frames
    from qvl.encoded_rows import processor_fingerprint
    from qvl.prepared import prepare_samples

    width, height = image_size
    patch_size = int(getattr(processor.image_processor, "patch_size", 14))  # what qvl.chat uses
    trajectories = store.trajectories

    def prepare(index: int) -> tuple[dict[str, Any], dict[str, Any]]:
        trajectory = trajectories[index]
        frames = store.frames(trajectory, list(range(trajectory.num_frames)))
        part = {"type": "video", "video": [Image.fromarray(frame) for frame in frames],
                "resized_width": width, "resized_height": height}
        return {"frames": shown_frames(part, patch_size)}, {"id": trajectory.id}

    fingerprint = {"version": VERSION, "store": store.fingerprint, "size": [width, height], "patch": patch_size,
                   "processor": processor_fingerprint(processor, backbone_name)}
    return ShownFrames(prepare_samples(len(trajectories), prepare, fingerprint=fingerprint, name="vqa-shown-frames"))


def run_shown_frames(config: Any, processor: Any, stage: str) -> ShownFrames | None:
    """The run's cache (None without ``train.prepared_cache``, with ``multi_image`` or colour jitter,
    and for ``predict --input``, whose store is another one)."""
    task = config.task
    if (not config.train.prepared_cache or task.multi_image or task.augment.color_jitter > 0
            or (stage == "predict" and config.predict.input)):
        return None
    from qvl_vqa.data import generated_dataset

    _, store = generated_dataset(config)
    return shown_frames_cache(store, task.image_size, processor, config.backbone.name)
