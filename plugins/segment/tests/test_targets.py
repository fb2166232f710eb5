import math

import numpy as np
import pytest

from qvl_segment.targets import count_target, gaussian_targets


def test_boundaries_are_exactly_one_and_fall_off_as_a_gaussian():
    heatmaps = gaussian_targets([(2, 5)], length=10, sigma=2.0)
    assert heatmaps.shape == (2, 10) and heatmaps.dtype == np.float32
    assert heatmaps[0, 2] == 1.0 and heatmaps[1, 5] == 1.0
    # start channel at t=4: d=2 -> exp(-4 / 8) = 0.60653; at t=0: exp(-4/8) too; end channel at t=8: d=3 -> exp(-9/8)
    assert heatmaps[0, 4] == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert heatmaps[0, 0] == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert heatmaps[1, 8] == pytest.approx(math.exp(-9 / 8), rel=1e-6)
    assert heatmaps[0].argmax() == 2 and heatmaps[1].argmax() == 5


def test_nearby_boundaries_combine_by_max_not_sum():
    heatmaps = gaussian_targets([(0, 1), (3, 6)], length=8, sigma=1.0)
    # start channel at t=1: max(exp(-1/2) from b=0, exp(-4/2) from b=3) = 0.60653 (a sum would give 0.74187)
    assert heatmaps[0, 1] == pytest.approx(math.exp(-0.5), rel=1e-6)
    # t=2 is halfway-ish: max(exp(-4/2), exp(-1/2)) = exp(-1/2)
    assert heatmaps[0, 2] == pytest.approx(math.exp(-0.5), rel=1e-6)
    assert heatmaps[0, 0] == 1.0 and heatmaps[0, 3] == 1.0
    assert heatmaps.max() == 1.0


def test_no_segments_gives_zeros():
    heatmaps = gaussian_targets([], length=6, sigma=1.5)
    assert heatmaps.shape == (2, 6) and not heatmaps.any()


@pytest.mark.parametrize("sigma", [0.0, -1.0])
def test_sigma_must_be_positive(sigma):
    with pytest.raises(ValueError, match="sigma"):
        gaussian_targets([(0, 1)], length=4, sigma=sigma)


def test_segment_outside_the_sampled_range_is_rejected():
    with pytest.raises(ValueError):
        gaussian_targets([(2, 4)], length=4, sigma=1.0)


def test_count_target_is_the_number_of_segments_and_refuses_too_many():
    assert count_target([(0, 1), (3, 4)], k_max=2) == 2
    assert count_target([], k_max=0) == 0
    with pytest.raises(ValueError, match="k_max=1"):
        count_target([(0, 1), (3, 4)], k_max=1)
