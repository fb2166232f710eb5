"""Rank correlation and bootstrap intervals shared by the tasks' evaluations."""

import numpy as np
import pytest

from qvl.scoring import bootstrap_interval, mean_interval, ranks, spearman


def test_spearman_against_hand_computed_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties share their mean rank: ranks [1, 2.5, 2.5, 4] against [1, 2, 3, 4] -> 0.9486832980505138
    assert ranks([0, 1, 1, 2]).tolist() == [1, 2.5, 2.5, 4]
    assert spearman([0, 1, 1, 2], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)
    assert spearman([2, 2, 2], [1, 2, 3]) is None  # a constant side: undefined, not 0
    assert spearman([1], [1]) is None
    with pytest.raises(ValueError):
        spearman([1, 2], [1])


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = rng.normal(5.0, 1.0, 50)
    large = rng.normal(5.0, 1.0, 5000)
    low_s, high_s = mean_interval(small, resamples=500)
    low_l, high_l = mean_interval(large, resamples=500)
    assert low_s < small.mean() < high_s and low_l < 5.0 < high_l
    # the width of a mean's interval shrinks as 1/sqrt(n): 10x narrower for 100x the data
    assert (high_s - low_s) / (high_l - low_l) == pytest.approx(10, rel=0.3)
    assert (high_l - low_l) == pytest.approx(2 * 1.96 / np.sqrt(5000), rel=0.15)
    # the same seed resamples the same units: two systems compared on identical resamples
    assert mean_interval(small, seed=3) == mean_interval(small, seed=3)
    assert bootstrap_interval(lambda idx: 0.0, 0) is None


def test_a_cluster_bootstrap_is_wider_when_units_of_a_group_move_together():
    rng = np.random.default_rng(1)
    # 10 recordings of 50 samples each: a recording's samples share its offset
    offsets = np.repeat(rng.normal(0, 1, 10), 50)
    values = offsets + rng.normal(0, 0.1, 500)
    groups = np.repeat(np.arange(10), 50)
    naive = mean_interval(values, resamples=400)
    clustered = bootstrap_interval(lambda idx: float(values[idx].mean()), 500, resamples=400, groups=groups)
    assert (clustered[1] - clustered[0]) > 4 * (naive[1] - naive[0])
    with pytest.raises(ValueError):
        bootstrap_interval(lambda idx: 0.0, 3, groups=[1, 2])
