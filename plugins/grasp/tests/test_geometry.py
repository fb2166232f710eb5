import math

import pytest

from qvl_grasp.geometry import Grasp, angle_difference, circular_mean, ensemble_mean, fold_angle, rotated_iou
from qvl_grasp.scoring import match, summarize


@pytest.mark.parametrize(("theta", "folded"), [(0, 0), (90, -90), (-90, -90), (89.5, 89.5), (135, -45),
                                              (-135, 45), (180, 0), (270, -90), (-271, 89)])
def test_angles_fold_into_minus_90_to_90(theta, folded):
    assert fold_angle(theta) == pytest.approx(folded)


def test_corners_and_grasp_are_inverse_and_the_first_edge_is_the_opening():
    corners = [(10, 20), (50, 20), (50, 40), (10, 40)]  # opening along +x, 40 wide, jaws 20
    grasp = Grasp.from_corners(corners)
    assert (grasp.cx, grasp.cy, grasp.theta, grasp.w, grasp.h) == pytest.approx((30, 30, 0, 40, 20))
    again = Grasp.from_corners(grasp.corners())
    assert (again.cx, again.cy, again.theta, again.w, again.h) == pytest.approx((30, 30, 0, 40, 20))


def test_theta_is_counter_clockwise_as_seen_and_folded():
    # first edge pointing up-right on screen (y decreases): +45 degrees
    up_right = Grasp.from_corners([(0, 10), (10, 0), (15, 5), (5, 15)])
    assert up_right.theta == pytest.approx(45)
    # the same rectangle listed from the opposite corner: the edge points down-left (-135) -> folded to 45
    reversed_start = Grasp.from_corners([(15, 5), (5, 15), (0, 10), (10, 0)])
    assert reversed_start.theta == pytest.approx(45)
    assert (reversed_start.cx, reversed_start.cy) == pytest.approx((up_right.cx, up_right.cy))


@pytest.mark.parametrize("theta", [0, 30, -60, 89])
def test_rotated_iou_hand_computed_cases(theta):
    a = Grasp(cx=100, cy=100, theta=theta, w=40, h=20)
    assert rotated_iou(a, a) == pytest.approx(1.0)
    # the same rectangle turned by 90 degrees: overlap 20x20=400, union 800+800-400
    assert rotated_iou(a, Grasp(100, 100, theta + 90, 40, 20)) == pytest.approx(400 / 1200)
    # half overlap: shifted by half its width along its own opening direction -> 400 / 1200
    t = math.radians(theta)
    shifted = a.shifted(20 * math.cos(t), -20 * math.sin(t))
    assert rotated_iou(a, shifted) == pytest.approx(400 / 1200)
    # disjoint
    assert rotated_iou(a, a.shifted(500, 0)) == 0.0


def test_angle_difference_is_modulo_180():
    assert angle_difference(-89, 89) == pytest.approx(2)
    assert angle_difference(10, 190) == pytest.approx(0)
    assert angle_difference(0, 90) == pytest.approx(90)
    assert angle_difference(-45, 45) == pytest.approx(90)


def test_circular_mean_has_period_180():
    assert circular_mean([89, -89]) == pytest.approx(-90)  # 90 and -90 are the same grasp
    assert circular_mean([10, 20, 30]) == pytest.approx(20)
    assert circular_mean([80, -80]) == pytest.approx(-90)
    assert abs(circular_mean([-85, 85, 89])) == pytest.approx(89.67, abs=0.01)


def test_ensemble_mean_averages_positions_and_angles_circularly():
    mean = ensemble_mean([Grasp(0, 0, 88, 10, 4), Grasp(10, 20, -88, 20, 6)])
    assert (mean.cx, mean.cy, mean.w, mean.h) == pytest.approx((5, 10, 15, 5))
    assert mean.theta == pytest.approx(-90)


def test_success_needs_iou_above_025_and_angle_below_30_against_any_truth():
    truth = Grasp(100, 100, 0, 40, 20)
    far = Grasp(400, 400, 0, 40, 20)
    # IoU exactly 1/3 at half overlap passes; shifted further to IoU below 0.25 fails
    assert match(truth.shifted(20, 0), [truth]).success
    shift = 40 * (1 - 0.25) / (1 + 0.25)  # IoU = (40-d)/(40+d) = 0.25 at d = 24
    assert not match(truth.shifted(shift + 0.5, 0), [truth]).success
    assert match(truth.shifted(shift - 0.5, 0), [truth]).success
    # angle 29 passes, 31 fails (same centre: IoU stays high)
    assert match(Grasp(100, 100, 29, 40, 20), [truth]).success
    assert not match(Grasp(100, 100, 31, 40, 20), [truth]).success
    # wrap-around: -89 vs 89 is 2 degrees apart
    assert match(Grasp(100, 100, 89, 40, 20), [Grasp(100, 100, -89, 40, 20)]).success
    # any ground truth counts; errors are against the best-IoU one
    result = match(Grasp(401, 400, 5, 40, 20), [truth, far])
    assert result.success and result.center_error == pytest.approx(1) and result.angle_error == pytest.approx(5)
    # high IoU but wrong angle and right angle but no overlap are both failures
    assert not match(Grasp(100, 100, 45, 40, 20), [truth]).success
    assert not match(Grasp(300, 100, 0, 40, 20), [truth]).success


def test_summary_counts_invalid_outputs_as_failures():
    truth = [Grasp(100, 100, 0, 40, 20)]
    summary = summarize([Grasp(100, 100, 0, 40, 20), None, Grasp(500, 500, 0, 40, 20), None], [truth] * 4)
    assert summary["success_rate"] == 0.25
    assert summary["invalid_rate"] == 0.5
    assert summary["mean_iou"] == pytest.approx(0.5)  # over the two valid ones: 1 and 0
