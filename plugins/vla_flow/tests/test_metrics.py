"""Offline metrics: MSE per dimension, key/button accuracy, jerk, over valid chunk steps only."""

import numpy as np
import pytest

from qvl_vla_flow.actions import ActionSpace
from qvl_vla_flow.metrics import chunk_statistics, constant_chunk, summarise

SPACE = ActionSpace(("UP", "LEFT"))  # 4 mouse + 3 buttons + 2 keys = 9 dims


def test_metrics_count_valid_steps_only():
    target = -np.ones((4, 9))
    target[:, :4] = 0.0  # the cursor at the centre, still
    target[:, 7] = [1, 1, -1, -1]  # UP held for two steps
    predicted = target.copy()
    predicted[0, 0] = 0.5  # a mouse error of 0.5 at step 0
    predicted[1, 7] = -0.2  # UP missed at step 1
    predicted[3] = 9.0  # padding: ignored
    valid = np.array([True, True, True, False])
    result = summarise([chunk_statistics(predicted, target, valid, SPACE)], SPACE)
    assert result["steps"] == 3
    assert result["mse_per_dim"]["mouse_x"] == pytest.approx(0.25 / 3, abs=1e-5)
    assert result["mse_per_dim"]["key_UP"] == pytest.approx(1.2 ** 2 / 3, abs=1e-5)
    assert result["accuracy_per_channel"]["key_UP"] == pytest.approx(2 / 3, abs=1e-5)
    assert result["key_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert result["button_accuracy"] == 1.0


def test_jerk_is_zero_for_constant_velocity_and_positive_for_jitter():
    steady = np.zeros((6, 9))
    steady[:, 0] = np.linspace(-1, 1, 6)
    jittery = steady.copy()
    jittery[::2, 1] = 0.3
    valid = np.ones(6, dtype=bool)
    assert summarise([chunk_statistics(steady, steady, valid, SPACE)], SPACE)["jerk"] == pytest.approx(0.0, abs=1e-20)
    result = summarise([chunk_statistics(jittery, steady, valid, SPACE)], SPACE)
    assert result["jerk"] > 0.1 and result["true_jerk"] == pytest.approx(0.0, abs=1e-20)


def test_sums_over_chunks_weight_by_steps():
    a = chunk_statistics(np.zeros((2, 9)), np.ones((2, 9)), np.array([True, True]), SPACE)
    b = chunk_statistics(np.zeros((2, 9)), np.zeros((2, 9)), np.array([True, False]), SPACE)
    assert summarise([a, b], SPACE)["mse"] == pytest.approx(2 / 3)
    assert constant_chunk([1, 2], 3).tolist() == [[1, 2]] * 3


def test_first_step_metrics_score_the_executed_action_only():
    target = -np.ones((3, 9))
    target[:, :4] = 0.0
    predicted = target.copy()
    predicted[1:, 7] = 1.0  # wrong later, right at once
    result = summarise([chunk_statistics(predicted, target, np.ones(3, dtype=bool), SPACE)], SPACE)
    assert result["first_step"]["mse"] == 0.0 and result["first_step"]["key_accuracy"] == 1.0
    assert result["key_accuracy"] == pytest.approx((1 / 3 + 1) / 2)
