"""A video given as one ``T x H x W x 3`` uint8 array: frames already as the model sees them.

qwen-vl-utils takes a video as a file or a list of frames and resizes a frame list every time:
each frame under the image rules with twice the patch factor (a 64x64 frame goes to 128x128; its
known quirk, QwenLM/Qwen3-VL issues 1833 and 1931), then the stack under the video rules, with a
thread pool per clip: about 16 ms for four 64x64 frames, most of a vqa batch. qvl keeps that
behaviour for lists, so that a model trained through qvl sees what it will see served through
qwen-vl-utils. A task that keeps what a list became (:func:`shown_frames`, once per frame) passes
it back as one array, used as it is: the same tensor, without the resizing.
"""

from __future__ import annotations

import math
from typing import Any

FRAME_FACTOR = 2  # Qwen-VL merges frames in pairs (temporal patch size 2)


def shown_frames(part: dict[str, Any], patch_size: int) -> Any:
    """The frames of the frame-list video ``part`` as qwen-vl-utils makes them (its ``fetch_video``),
    as a ``T x H x W x 3`` uint8 array of the part's own frame count (the even-count padding left
    out). Each frame is processed on its own, so frames of one recording can be made once and any
    selection of them passed later."""
    from qwen_vl_utils.vision_process import fetch_video

    video = fetch_video(part, image_patch_size=patch_size)
    frames = video[: len(part["video"])].round().clamp(0, 255).byte()  # uint8 values held as floats
    return frames.permute(0, 2, 3, 1).contiguous().numpy()


def array_video(part: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
    """``(video, metadata)`` as ``fetch_video(..., return_video_metadata=True)`` gives them, for a part
    whose ``"video"`` is one uint8 array (a float ``[T, 3, H, W]`` tensor, ``T`` even: the last frame
    repeated); None for anything else."""
    import numpy as np
    import torch

    frames = part.get("video")
    if not isinstance(frames, np.ndarray):
        return None
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3 or not len(frames):
        raise ValueError(f"a video given as one array must be T x H x W x 3 uint8, got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    count = math.ceil(len(frames) / FRAME_FACTOR) * FRAME_FACTOR
    if count > len(frames):
        frames = np.concatenate([frames, np.repeat(frames[-1:], count - len(frames), axis=0)])
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().contiguous()
    sample_fps = part.get("sample_fps", 2.0)
    raw_fps = part.get("raw_fps", sample_fps)
    metadata = {"fps": raw_fps, "frames_indices": list(range(count)),
                "total_num_frames": (count / sample_fps) * raw_fps}
    return video, metadata
