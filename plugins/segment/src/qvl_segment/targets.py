"""Training targets for the segmentation heads: start/end boundary heatmaps and the segment count.

Heatmaps are Gaussian bumps rather than one-hot spikes so that a boundary predicted one or two
sampled frames off still earns partial credit, which keeps the loss smooth where annotations are
only accurate to a few frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def gaussian_targets(segments: Sequence[tuple[int, int]], length: int, sigma: float) -> np.ndarray:
    """Start (channel 0) and end (channel 1) heatmaps, float32 ``[2, length]``.

    Each boundary ``b`` adds ``exp(-(t - b)^2 / (2 sigma^2))``; overlapping bumps combine by max, so
    every boundary is exactly 1.0 and nearby boundaries never sum above 1. No segments: all zeros.
    Segments are inclusive ``(start, end)`` in sampled-index space ``0..length-1``.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    heatmaps = np.zeros((2, length), dtype=np.float64)
    steps = np.arange(length, dtype=np.float64)
    for start, end in segments:
        if not 0 <= start <= end < length:
            raise ValueError(f"segment ({start}, {end}) is not inside 0..{length - 1} with start <= end")
        for channel, boundary in ((0, start), (1, end)):
            bump = np.exp(-((steps - boundary) ** 2) / (2.0 * sigma**2))
            np.maximum(heatmaps[channel], bump, out=heatmaps[channel])
    return heatmaps.astype(np.float32)


def count_target(segments: Sequence[tuple[int, int]], k_max: int) -> int:
    """Target of the count head: the number of segments.

    More than ``k_max`` segments is an error rather than a clip, because a clipped count would teach
    the head a wrong answer silently; the caller names the episode in the message it shows the user.
    """
    count = len(segments)
    if count > k_max:
        raise ValueError(f"{count} segments exceed k_max={k_max}")
    return count
