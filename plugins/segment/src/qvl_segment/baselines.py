"""Baselines a user without a model has: equal splits, the usual count, and a frame-difference
change-point detector. They return scored segments like the model, so the same metrics rank them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from qvl_segment.postprocess import find_peaks


def uniform_split(num_frames: int, k: int) -> list[tuple[int, int, float]]:
    """``k`` contiguous parts covering frames ``0..num_frames-1``, part ``i`` starting at
    ``floor(i * num_frames / k)`` (so sizes differ by at most one frame, longer parts last); score 1.0."""
    if k < 0 or k > num_frames:
        raise ValueError(f"cannot split {num_frames} frames into {k} non-empty parts")
    starts = [i * num_frames // k for i in range(k)] + [num_frames]
    return [(starts[i], starts[i + 1] - 1, 1.0) for i in range(k)]


def most_frequent_count(train_counts: Sequence[int]) -> int:
    """The segment count seen most often in training (the smaller count on ties), the count a
    model-free user would guess for every episode."""
    if not train_counts:
        raise ValueError("no training counts")
    tally = Counter(int(count) for count in train_counts)
    return min(tally, key=lambda count: (-tally[count], count))


def _moving_average(signal: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average with edge padding, so the ends are not pulled towards zero."""
    if window <= 1 or len(signal) == 0:
        return signal
    left = (window - 1) // 2
    padded = np.pad(signal, (left, window - 1 - left), mode="edge")
    return np.convolve(padded, np.ones(window) / window, mode="valid")


def frame_difference_segments(
    frames: np.ndarray,
    frame_numbers: np.ndarray,
    *,
    smooth: int = 1,
    threshold: float | None = None,
    min_length: int = 1,
) -> list[tuple[int, int, float]]:
    """Change-point segmentation from how much consecutive sampled frames differ.

    ``frames`` ``[N, H, W, C]`` (uint8 or float) are the sampled frames, frame ``i`` being original frame
    ``frame_numbers[i]``. Signal ``d[i]`` = mean absolute difference between frames ``i`` and ``i + 1``,
    smoothed by a centred moving average of ``smooth`` values. Each local maximum of ``d`` strictly
    above ``threshold`` (default: mean + 1 std of ``d``) cuts between frames ``i`` and ``i + 1``. A
    segment runs from its first to its last sampled frame, returned as original frame numbers
    ``(frame_numbers[first], frame_numbers[last])`` as model predictions are; segments with fewer than
    ``min_length`` sampled frames are dropped. Score: mean of ``d`` over the segment's inner transitions
    divided by the maximum of ``d`` (in [0, 1]; 0 for a one-frame segment or a still video), i.e. segments
    with motion inside rank above still ones, which are more likely background.
    """
    if smooth < 1:
        raise ValueError(f"smooth must be >= 1, got {smooth}")
    if len(frames) != len(frame_numbers):
        raise ValueError(f"{len(frames)} frames vs {len(frame_numbers)} frame numbers")
    count = len(frames)
    if count == 0:
        return []
    pixels = np.asarray(frames, dtype=np.float32)  # float first: uint8 differences would wrap around
    differences = np.abs(np.diff(pixels, axis=0)).reshape(count - 1, -1).mean(axis=1)
    signal = _moving_average(differences.astype(np.float64), smooth)
    if threshold is None:
        threshold = float(signal.mean() + signal.std()) if len(signal) else 0.0
    cuts = sorted(index for index, value in find_peaks(signal, threshold, nms_radius=0) if value > threshold)

    peak = float(signal.max()) if len(signal) else 0.0
    segments: list[tuple[int, int, float]] = []
    for first, last in zip([0] + [cut + 1 for cut in cuts], cuts + [count - 1], strict=True):
        if last - first + 1 < min_length:
            continue
        inner = signal[first:last]  # transitions first->first+1 .. last-1->last
        score = float(inner.mean()) / peak if len(inner) and peak > 0 else 0.0
        segments.append((int(frame_numbers[first]), int(frame_numbers[last]), score))
    return segments
