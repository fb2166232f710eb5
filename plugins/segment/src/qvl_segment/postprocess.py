"""From head outputs to segments: peaks of the start/end curves, paired into exactly K segments.

The count head says how many segments an episode has (K); the start and end heads say where
boundaries are likely. Decoding honours K: peaks are paired greedily by confidence and, when peaks
alone cannot give K segments, the rest is filled from the uncovered parts of the episode. All indices
are sampled indices ``0..T-1``; segments are inclusive ``(start, end, score)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def find_peaks(curve: Sequence[float] | np.ndarray, threshold: float, nms_radius: int) -> list[tuple[int, float]]:
    """Local maxima of ``curve`` with value >= ``threshold``, thinned by 1-D non-maximum suppression.

    A local maximum is a run of equal values whose neighbours (where they exist) are both lower; a
    plateau counts once, at its first index, and the ends of the curve can be peaks. NMS keeps peaks
    greedily by score and drops any within ``nms_radius`` indices of a kept one, so one blurred
    boundary does not yield several. Returned as ``(index, value)`` by value descending, ties by index.
    """
    if nms_radius < 0:
        raise ValueError(f"nms_radius must be >= 0, got {nms_radius}")
    values = np.asarray(curve, dtype=np.float64).reshape(-1)
    peaks: list[tuple[int, float]] = []
    run_start = 0
    for index in range(1, len(values) + 1):
        if index < len(values) and values[index] == values[run_start]:
            continue  # still on the same plateau
        value = values[run_start]
        left_lower = run_start == 0 or values[run_start - 1] < value
        right_lower = index == len(values) or values[index] < value
        if left_lower and right_lower and value >= threshold:
            peaks.append((run_start, float(value)))
        run_start = index
    peaks.sort(key=lambda peak: (-peak[1], peak[0]))
    kept: list[tuple[int, float]] = []
    for index, value in peaks:
        if all(abs(index - kept_index) > nms_radius for kept_index, _ in kept):
            kept.append((index, value))
    return kept


def _covered(segments: Sequence[tuple[int, int, float]], length: int) -> np.ndarray:
    mask = np.zeros(length, dtype=bool)
    for start, end, _ in segments:
        mask[start:end + 1] = True
    return mask


def _gaps(covered: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of uncovered indices, inclusive."""
    gaps: list[tuple[int, int]] = []
    index = 0
    while index < len(covered):
        if covered[index]:
            index += 1
            continue
        gap_start = index
        while index < len(covered) and not covered[index]:
            index += 1
        gaps.append((gap_start, index - 1))
    return gaps


def _capacity(gap: tuple[int, int], min_length: int) -> int:
    """How many segments of at least ``min_length`` still fit in a gap."""
    return (gap[1] - gap[0] + 1) // min_length


def _room_after(gap: tuple[int, int], start: int, end: int, min_length: int) -> int:
    """Segments that fit in ``gap`` once ``(start, end)`` inside it is taken, the taken one included."""
    return 1 + (start - gap[0]) // min_length + (gap[1] - end) // min_length


def _overlaps(start: int, end: int, segments: Sequence[tuple[int, int, float]]) -> bool:
    return any(start <= taken_end and taken_start <= end for taken_start, taken_end, _ in segments)


def _at_least(start: int, end: int, min_length: int, length: int) -> tuple[int, int] | None:
    """Extend ``(start, end)`` to ``min_length`` inside ``0..length-1``: the end moves right first,
    the start moves left only where the end hits the last index; None if the episode is too short."""
    if end - start + 1 >= min_length:
        return start, end
    if min_length > length:
        return None
    end = start + min_length - 1
    if end > length - 1:
        end = length - 1
        start = end - min_length + 1
    return start, end


def pair_segments(
    start: Sequence[float] | np.ndarray,
    end: Sequence[float] | np.ndarray,
    k: int,
    *,
    threshold: float = 0.1,
    nms_radius: int = 1,
    min_length: int = 1,
    fill: bool = True,
) -> list[tuple[int, int, float]]:
    """At most ``k`` non-overlapping segments ``(start, end, score)`` sorted by start.

    Pairing: every start peak ``s`` with every end peak ``e >= s`` (peaks from :func:`find_peaks`) is
    a candidate scored ``sqrt(start[s] * end[e])``; one shorter than ``min_length`` is extended (see
    :func:`_at_least`) or dropped. Candidates are taken best first, skipping any that overlaps a taken
    one, until ``k`` are taken.

    Fill (``fill=True``): the target is exactly ``k`` segments, or as many as fit when
    ``k * min_length > T``. So that the target stays reachable, a peak candidate is also skipped
    when taking it would leave too little uncovered room for the rest. Then, while short of the target,
    the largest uncovered gap (the earliest on ties) receives one segment: its start is the argmax of
    the start curve (first on ties) over the positions in the gap that keep the target reachable, its
    end the argmax of the end curve over the allowed ends from ``start + min_length - 1``. Its score is
    ``sqrt(start[s] * end[e])`` like a peak pair's, so filled segments rank low in detection metrics.
    """
    start_curve = np.asarray(start, dtype=np.float64).reshape(-1)
    end_curve = np.asarray(end, dtype=np.float64).reshape(-1)
    if start_curve.shape != end_curve.shape:
        raise ValueError(f"start and end curves differ in length: {len(start_curve)} vs {len(end_curve)}")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    length = len(start_curve)
    if k == 0 or length == 0:
        return []
    target = min(k, length // min_length) if fill else k

    def score(segment_start: int, segment_end: int) -> float:
        return math.sqrt(max(start_curve[segment_start], 0.0) * max(end_curve[segment_end], 0.0))

    def reachable_with(segment_start: int, segment_end: int, taken: list[tuple[int, int, float]]) -> bool:
        """Whether ``target`` stays reachable once this segment (inside an uncovered gap) is taken."""
        room = len(taken)
        for gap in _gaps(_covered(taken, length)):
            if gap[0] <= segment_start and segment_end <= gap[1]:
                room += _room_after(gap, segment_start, segment_end, min_length)
            else:
                room += _capacity(gap, min_length)
        return room >= target

    candidates: list[tuple[float, int, int]] = []
    end_peaks = find_peaks(end_curve, threshold, nms_radius)
    for start_index, _ in find_peaks(start_curve, threshold, nms_radius):
        for end_index, _ in end_peaks:
            if end_index < start_index:
                continue  # an end before its start is never a segment
            extended = _at_least(start_index, end_index, min_length, length)
            if extended is not None:
                candidates.append((score(start_index, end_index), *extended))
    candidates.sort(key=lambda candidate: (-candidate[0], candidate[1], candidate[2]))

    taken: list[tuple[int, int, float]] = []
    for candidate_score, segment_start, segment_end in candidates:
        if len(taken) == k:
            break
        if _overlaps(segment_start, segment_end, taken):
            continue
        if fill and not reachable_with(segment_start, segment_end, taken):
            continue
        taken.append((segment_start, segment_end, candidate_score))

    while fill and len(taken) < target:
        gaps = _gaps(_covered(taken, length))
        others_capacity = sum(_capacity(gap, min_length) for gap in gaps)
        gap = max(gaps, key=lambda g: (g[1] - g[0], -g[0]))  # largest, earliest on ties
        needed_here = target - len(taken) - (others_capacity - _capacity(gap, min_length))
        starts = [s for s in range(gap[0], gap[1] - min_length + 2)
                  if _room_after(gap, s, s + min_length - 1, min_length) >= needed_here]
        segment_start = max(starts, key=lambda s: (start_curve[s], -s))
        ends = [e for e in range(segment_start + min_length - 1, gap[1] + 1)
                if _room_after(gap, segment_start, e, min_length) >= needed_here]
        segment_end = max(ends, key=lambda e: (end_curve[e], -e))
        taken.append((segment_start, segment_end, score(segment_start, segment_end)))

    return sorted(taken)


def segments_from_heads(
    start: Sequence[float] | np.ndarray, end: Sequence[float] | np.ndarray, k: int, **options: Any
) -> list[tuple[int, int, float]]:
    """Segments of one episode from its head outputs; the plugin's entry point (options as
    :func:`pair_segments`)."""
    return pair_segments(start, end, int(k), **options)
