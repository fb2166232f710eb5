"""A video given as a list of frames, as the processor's input tensor: resized once, as qwen-vl-utils
resizes a video file.

qwen-vl-utils' ``fetch_video`` has a known bug for frame lists (QwenLM/Qwen3-VL issues 1833, 1931):
it resizes each frame with ``fetch_image`` under the image rules and twice the patch factor, then
resizes the stack again under the video rules. A 64x64 frame shown at 64x64 goes up to 128x128 and
back (pixels off by up to 52 of 255), and the round trip, a thread pool a clip and a resize of
frames already at size cost about 13 ms for four 64x64 frames: most of a vqa batch's collate.
:func:`frame_list_video` does what ``fetch_video`` does for a file: the frames stacked, then one
bicubic antialiased resize to the size its video rules give (none when the frames are at it), with
the same even frame count and metadata.
"""

from __future__ import annotations

import math
from typing import Any

FRAME_FACTOR = 2  # Qwen-VL merges frames in pairs (temporal patch size 2)


def _rgb_array(frame: Any) -> Any:
    import numpy as np
    from PIL import Image

    if isinstance(frame, Image.Image):
        from qwen_vl_utils.vision_process import to_rgb

        return np.asarray(to_rgb(frame))
    array = np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"a video frame must be a PIL image or an H x W x 3 uint8 array, got {array.dtype} "
                         f"{tuple(array.shape)}")
    return array


def shown_size(part: dict[str, Any], frames: int, height: int, width: int, patch_size: int) -> tuple[int, int]:
    """The ``(height, width)`` qwen-vl-utils' ``fetch_video`` resizes a clip of ``frames`` frames of
    ``height x width`` to: ``resized_height`` / ``resized_width`` rounded to the merged patch, else
    the frame size within the video pixel budget (``min_pixels``, ``max_pixels``, ``total_pixels``)."""
    from qwen_vl_utils import vision_process as qwen

    factor = patch_size * qwen.SPATIAL_MERGE_SIZE
    if "resized_height" in part and "resized_width" in part:
        return qwen.smart_resize(part["resized_height"], part["resized_width"], factor=factor)
    min_pixels = part.get("min_pixels", qwen.VIDEO_MIN_TOKEN_NUM * factor * factor)
    total_pixels = part.get("total_pixels", qwen.MODEL_SEQ_LEN * factor * factor * 0.9)
    max_pixels = max(min(qwen.VIDEO_MAX_TOKEN_NUM * factor * factor, total_pixels / frames * FRAME_FACTOR),
                     int(min_pixels * 1.05))
    max_pixels = min(part.get("max_pixels", max_pixels), max_pixels)
    return qwen.smart_resize(height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)


def frame_list_video(part: dict[str, Any], patch_size: int) -> tuple[Any, dict[str, Any]] | None:
    """``(video, metadata)`` of a video part whose ``"video"`` is a list of frames of one size: a float
    ``[T, 3, H, W]`` tensor (``T`` even: the last frame repeated) and ``fetch_video``'s metadata; None
    for anything else (a path, frames of mixed sizes), which qwen-vl-utils reads."""
    import numpy as np
    import torch

    frames = part.get("video")
    if not isinstance(frames, (list, tuple)) or not frames:
        return None
    arrays = [_rgb_array(frame) for frame in frames]
    if len({a.shape for a in arrays}) != 1:
        return None
    count = math.ceil(len(arrays) / FRAME_FACTOR) * FRAME_FACTOR
    arrays += [arrays[-1]] * (count - len(arrays))
    video = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    size = shown_size(part, count, video.shape[2], video.shape[3], patch_size)
    if tuple(size) != tuple(video.shape[2:]):
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as resize_functions

        video = resize_functions.resize(video, list(size), interpolation=InterpolationMode.BICUBIC, antialias=True)
    sample_fps = part.get("sample_fps", 2.0)
    raw_fps = part.get("raw_fps", sample_fps)
    metadata = {"fps": raw_fps, "frames_indices": list(range(count)),
                "total_num_frames": (count / sample_fps) * raw_fps}
    return video.float().contiguous(), metadata
