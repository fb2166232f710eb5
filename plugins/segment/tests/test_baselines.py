import numpy as np
import pytest

from qvl_segment.baselines import frame_difference_segments, most_frequent_count, uniform_split


def test_uniform_split_covers_all_frames_in_near_equal_parts():
    # starts floor(i * 10 / 3) = 0, 3, 6 -> (0,2) (3,5) (6,9)
    assert uniform_split(10, 3) == [(0, 2, 1.0), (3, 5, 1.0), (6, 9, 1.0)]
    assert uniform_split(10, 1) == [(0, 9, 1.0)]
    assert uniform_split(10, 0) == []
    with pytest.raises(ValueError):
        uniform_split(2, 3)


def test_most_frequent_count_breaks_ties_towards_the_smaller_count():
    assert most_frequent_count([3, 2, 3, 1]) == 3
    assert most_frequent_count([4, 2, 4, 2, 5]) == 2  # 2 and 4 twice each
    with pytest.raises(ValueError):
        most_frequent_count([])


def blocks(values, height=2, width=3):
    """One frame per value, every pixel of it equal to that value."""
    return np.stack([np.full((height, width, 3), value) for value in values])


def test_two_cuts_give_three_segments_in_original_frame_numbers():
    # three blocks of 4 sampled frames, values 100*b + j (j = 0..3 inside a block)
    values = [100 * block + j for block in range(3) for j in range(4)]
    frames = blocks(values).astype(np.uint8)
    frame_numbers = np.arange(12) * 5  # sampled every 5th original frame
    # signal [1,1,1,97,1,1,1,97,1,1,1]: mean 203/11 = 18.45, std 37.6 -> threshold 56.1; cuts after 3 and 7
    # sampled (0,3) (4,7) (8,11) -> original (0,15) (20,35) (40,55); score mean(1,1,1) / 97
    assert frame_difference_segments(frames, frame_numbers) == [
        (0, 15, pytest.approx(1 / 97)), (20, 35, pytest.approx(1 / 97)), (40, 55, pytest.approx(1 / 97))]


def test_uint8_frames_getting_darker_do_not_wrap_around():
    # 200 -> 0 is a difference of 200; uint8 subtraction would give 56 and change the score below
    frames = blocks([200, 200, 200, 0, 0, 0] + [10, 20, 10, 20, 10, 20]).astype(np.uint8)
    # signal [0,0,200,0,0,10,10,10,10,10,10]: mean 260/11 = 23.6, std 56.4 -> threshold 80; one cut after 2
    segments = frame_difference_segments(frames, np.arange(12))
    assert [(start, end) for start, end, _ in segments] == [(0, 2), (3, 11)]
    # inner transitions of (3,11): 0, 0, 10 x 6 -> mean 60/8 = 7.5, over the maximum 200
    assert segments[1][2] == pytest.approx(7.5 / 200)


def test_short_segments_are_dropped_and_a_still_video_is_one_segment():
    # signal [0,0,100,0,150,0,0,0]: mean 31.25, std 55.55 -> threshold 86.8; cuts after 2 and 4
    # -> sampled (0,2) (3,4) (5,8); min_length 3 drops (3,4); frame numbers are index + 10
    frames = blocks([0, 0, 0, 100, 100, 250, 250, 250, 250]).astype(np.float32)
    segments = frame_difference_segments(frames, np.arange(9) + 10, min_length=3)
    assert [(start, end) for start, end, _ in segments] == [(10, 12), (15, 18)]
    still = frame_difference_segments(blocks([7] * 5), np.arange(5))
    assert still == [(0, 4, 0.0)]


def test_smoothing_merges_two_close_changes_and_an_explicit_threshold_applies():
    # signal [0,0,40,0,60,0,0,0,0]: mean 11.1, std 21.3 -> threshold 32.4; cuts after 2 and 4
    frames = blocks([0, 0, 0, 40, 40, 100, 100, 100, 100, 100])
    numbers = np.arange(10)
    assert [(s, e) for s, e, _ in frame_difference_segments(frames, numbers)] == [(0, 2), (3, 4), (5, 9)]
    # smooth=3 (edge padded): [0, 13.3, 13.3, 33.3, 20, 20, 0, 0, 0]; mean 11.1, std 11.3 -> threshold 22.4;
    # the only peak is index 3 -> one cut after 3
    smoothed = frame_difference_segments(frames, numbers, smooth=3)
    assert [(s, e) for s, e, _ in smoothed] == [(0, 3), (4, 9)]
    # threshold 70 is above both changes -> no cut
    assert [(s, e) for s, e, _ in frame_difference_segments(frames, numbers, threshold=70)] == [(0, 9)]
