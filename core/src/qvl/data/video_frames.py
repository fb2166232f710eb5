"""Frames of a video file sampled at a rate, decoded with PyAV, for Qwen-VL's video input.

qwen-vl-utils reads video paths with torchvision (``torchvision.io.read_video``, gone from
torchvision 0.26 on), decord or torchcodec, none of which qvl can count on; PyAV is a core
dependency already. The sampling is qwen-vl-utils': ``round(duration * fps)`` frames, at least 2
and at most ``max_frames``, an even number, evenly spaced over the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from qvl.errors import UserError, unreadable_file

FRAME_FACTOR = 2  # Qwen-VL merges frames in pairs (temporal patch size 2)


@attrs.frozen
class SampledVideo:
    """``frames`` (RGB PIL images) at ``indices`` of the file's ``total`` frames, shown at ``native_fps``."""

    frames: list[Any]
    indices: list[int]
    native_fps: float
    total: int


def frame_count(total: int, native_fps: float, fps: float, max_frames: int) -> int:
    """How many frames to keep of ``total`` at ``native_fps`` when sampling at ``fps``."""
    wanted = round(total / native_fps * fps)
    wanted = min(max(wanted, FRAME_FACTOR), max_frames, total)
    return max(FRAME_FACTOR, wanted - wanted % FRAME_FACTOR) if total >= FRAME_FACTOR else total


def sample_frames(path: str | Path, fps: float, max_frames: int) -> SampledVideo:
    """Decode ``path`` and keep :func:`frame_count` evenly spaced frames.

    :raises UserError: the file is missing or cannot be decoded, naming it.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such video file")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            native_fps = float(stream.average_rate or stream.guessed_rate or 0) or 30.0
            total = int(stream.frames or 0)
            if not total and stream.duration is not None:
                total = max(1, round(float(stream.duration * stream.time_base) * native_fps))
            # with the length known, only the wanted frames are converted and kept (a long clip
            # decoded whole would not fit in memory)
            wanted = _indices(total, native_fps, fps, max_frames) if total else None
            kept: dict[int, Any] = {}
            decoded = 0
            for index, frame in enumerate(container.decode(stream)):
                decoded = index + 1
                if wanted is None or index in wanted:
                    kept[index] = frame.to_image().convert("RGB")
    except (av.FFmpegError, IndexError) as exc:
        raise unreadable_file(str(path), "video", exc) from None
    if not kept:
        raise UserError(f"{path}: a video without frames")
    if wanted is None:  # the length was unknown: every frame was kept, sample them now
        indices = sorted(_indices(decoded, native_fps, fps, max_frames))
    else:  # the wanted frames (fewer when the header overstated the length)
        indices = sorted(kept)
    return SampledVideo([kept[i] for i in indices], indices, native_fps, decoded)


def _indices(total: int, native_fps: float, fps: float, max_frames: int) -> set[int]:
    import numpy as np

    count = frame_count(total, native_fps, fps, max_frames)
    return {int(i) for i in np.linspace(0, total - 1, count).round()}
