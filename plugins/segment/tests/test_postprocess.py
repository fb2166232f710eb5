import math

import numpy as np
import pytest

from qvl_segment.postprocess import find_peaks, pair_segments, segments_from_heads


def curve(length, **values):
    """A zero curve with the given ``i<index>=value`` entries."""
    out = np.zeros(length)
    for key, value in values.items():
        out[int(key[1:])] = value
    return out


def test_peaks_are_local_maxima_above_threshold_sorted_by_score():
    values = [0.0, 0.9, 0.3, 0.6, 0.0, 0.0, 0.5, 0.0]
    assert find_peaks(values, threshold=0.1, nms_radius=0) == [(1, 0.9), (3, 0.6), (6, 0.5)]
    assert find_peaks(values, threshold=0.55, nms_radius=0) == [(1, 0.9), (3, 0.6)]


def test_nms_suppresses_a_neighbour_peak():
    values = [0.0, 0.9, 0.3, 0.6, 0.0, 0.0, 0.5, 0.0]
    # index 3 is 2 away from the stronger index 1: dropped with radius 2; index 6 is 5 away: kept
    assert find_peaks(values, threshold=0.1, nms_radius=2) == [(1, 0.9), (6, 0.5)]


def test_plateaus_count_once_and_ends_can_be_peaks():
    assert find_peaks([0.0, 0.5, 0.5, 0.0], threshold=0.1, nms_radius=0) == [(1, 0.5)]
    assert find_peaks([0.5, 0.5, 0.8], threshold=0.1, nms_radius=0) == [(2, 0.8)]  # rising plateau: no peak
    assert find_peaks([0.7, 0.2, 0.4], threshold=0.1, nms_radius=0) == [(0, 0.7), (2, 0.4)]


def test_pairing_picks_the_best_non_overlapping_pairs():
    start, end = curve(12, i1=0.9, i6=0.8), curve(12, i4=0.9, i10=0.7)
    # candidates: (1,4) sqrt(.81)=.9, (1,10) sqrt(.63)=.794, (6,10) sqrt(.56)=.748; (6,4) ends before it starts.
    # (1,4) first; (1,10) overlaps it; (6,10) next.
    assert pair_segments(start, end, 2) == [(1, 4, pytest.approx(0.9)), (6, 10, pytest.approx(math.sqrt(0.56)))]


def test_an_end_before_a_start_is_never_paired():
    start, end = curve(10, i6=0.9), curve(10, i2=0.9, i8=0.2)
    # (6,2) is invalid although both are 0.9; the only pair is (6,8) with sqrt(.9 * .2)
    assert pair_segments(start, end, 1, fill=False) == [(6, 8, pytest.approx(math.sqrt(0.18)))]
    assert pair_segments(start, curve(10, i2=0.9), 1, fill=False) == []


def test_overlapping_candidates_are_rejected_and_output_is_monotonic():
    start, end = curve(10, i0=0.9, i5=0.8), curve(10, i7=0.9, i9=0.6)
    # (0,7) .9 wins; (5,7) .849, (0,9) .735, (5,9) .693 all overlap it -> one segment from peaks
    assert pair_segments(start, end, 2, fill=False) == [(0, 7, pytest.approx(0.9))]
    # fill: the only gap is 8..9; start curve is 0 there (first index, 8), end argmax over 8..9 is 9 (0.6)
    segments = pair_segments(start, end, 2)
    assert segments == [(0, 7, pytest.approx(0.9)), (8, 9, 0.0)]


def test_short_pairs_are_extended_to_min_length():
    # (3,3) has length 1 -> with min_length 3 the end moves right: (3,5)
    assert pair_segments(curve(8, i3=0.8), curve(8, i3=0.8), 1, min_length=3) == [(3, 5, pytest.approx(0.8))]
    # at the last index the start moves left instead: (5,5) -> (3,5) in T=6
    assert pair_segments(curve(6, i5=0.8), curve(6, i5=0.8), 1, min_length=3) == [(3, 5, pytest.approx(0.8))]


def test_k_zero_gives_nothing():
    assert pair_segments(curve(6, i1=0.9), curve(6, i3=0.9), 0) == []


def test_fill_gives_exactly_k_segments_when_peaks_are_too_few():
    start, end = curve(10, i2=0.9), curve(10, i4=0.9)
    # peak pair (2,4). Fill, largest gap first, argmax (first on ties) among positions keeping K reachable:
    # gap 5..9 -> start 5, ends allowed 6..7 (zeros) -> (5,6); gap 7..9 -> (7,8); gap 0..1 -> (0,1)
    segments = pair_segments(start, end, 4, min_length=2)
    assert segments == [(0, 1, 0.0), (2, 4, pytest.approx(0.9)), (5, 6, 0.0), (7, 8, 0.0)]


def test_fill_keeps_k_reachable_by_skipping_a_blocking_peak_pair():
    start, end = curve(10, i2=0.9), curve(10, i6=0.9)
    # K=3, min_length=3, T=10: taking (2,6) would leave 0..1 and 7..9, room for one more -> skipped.
    # gap 0..9, need 3: allowed starts {0,1,3,4,6,7}, all 0 -> 0; ends with room for 2 after: 2..3 -> (0,2).
    # gap 3..9, need 2: starts {3,4,6,7} -> 3; ends 5..6, end[6]=.9 -> (3,6). gap 7..9 -> (7,9).
    assert pair_segments(start, end, 3, min_length=3) == [(0, 2, 0.0), (3, 6, 0.0), (7, 9, 0.0)]
    # without fill the peak pair is kept and nothing else
    assert pair_segments(start, end, 3, min_length=3, fill=False) == [(2, 6, pytest.approx(0.9))]


def test_k_beyond_what_fits_gives_as_many_as_fit():
    # T=5, min_length=3: only one segment fits
    assert len(pair_segments(np.zeros(5), np.zeros(5), 2, min_length=3)) == 1


def test_segments_from_heads_is_pair_segments():
    start, end = [0.0, 0.9, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.8, 0.0]
    assert segments_from_heads(start, end, np.int64(1), nms_radius=2) == pair_segments(start, end, 1, nms_radius=2)
    assert segments_from_heads(start, end, 1) == [(1, 3, pytest.approx(math.sqrt(0.72)))]
