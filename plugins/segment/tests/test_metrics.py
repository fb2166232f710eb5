import math

import pytest

from qvl_segment.metrics import (
    average_precision,
    boundary_mae,
    count_accuracy,
    detection_metrics,
    frame_labels,
    match_segments,
    segmentation_metrics,
    t_iou,
)

# Episode A: truths (0,9), (20,29); episode B: truth (0,9).
TRUTHS = [[(0, 9), (20, 29)], [(0, 9)]]
# A: a false positive ranked first, an exact hit, a half hit (tIoU 5/10 = 0.5); B: (2,9) vs (0,9) = 8/10.
PREDICTIONS = [[(40, 49, 0.9), (0, 9, 0.8), (20, 24, 0.7)], [(2, 9, 0.6)]]


def test_t_iou_of_inclusive_segments():
    assert t_iou((0, 4), (3, 7)) == pytest.approx(2 / 8)  # common frames 3,4; union 5 + 5 - 2
    assert t_iou((0, 0), (0, 1)) == pytest.approx(1 / 2)
    assert t_iou((2, 5), (2, 5)) == 1.0
    assert t_iou((0, 3), (4, 9)) == 0.0


def test_average_precision_with_a_false_positive_ranked_first():
    # ranks: FP, TP, TP, TP; 3 truths. precision 0, 1/2, 2/3, 3/4 at recall 0, 1/3, 2/3, 1.
    # envelope: 3/4 at every recall step -> AP = 3 * (1/3 * 3/4) = 0.75
    assert average_precision(PREDICTIONS, TRUTHS, 0.5) == pytest.approx(0.75)
    # at 0.7 the half hit is a FP: FP, TP, FP, TP -> precision 0, 1/2, 1/3, 1/2 at recall 0, 1/3, 1/3, 2/3
    # envelope 1/2 up to recall 2/3 -> AP = 1/3 * 1/2 + 1/3 * 1/2 = 1/3
    assert average_precision(PREDICTIONS, TRUTHS, 0.7) == pytest.approx(1 / 3)


def test_average_precision_matches_the_best_overlapping_truth():
    # (4,13) vs (0,9): 6/14 = 0.43; vs (6,15): 8/12 = 0.67 -> takes (6,15).
    # (6,15) then finds (6,15) taken and (0,9) at 4/16 = 0.25 < 0.3 -> FP. precision 1, 1/2; recall 1/2, 1/2.
    # AP = 1/2 * 1 = 0.5 (matching (4,13) to the first truth above 0.3 instead would give 1.0)
    assert average_precision([[(4, 13, 0.9), (6, 15, 0.8)]], [[(0, 9), (6, 15)]], 0.3) == pytest.approx(0.5)


def test_average_precision_without_truths_is_nan_and_without_predictions_zero():
    assert math.isnan(average_precision([[(0, 1, 0.5)]], [[]], 0.5))
    assert average_precision([[]], [[(0, 1)]], 0.5) == 0.0


def test_detection_metrics_summary():
    metrics = detection_metrics(PREDICTIONS, TRUTHS)
    # 0.3 gives the same matches as 0.5 -> 0.75; mean (0.75 + 0.75 + 1/3) / 3
    assert metrics["mAP@0.3"] == pytest.approx(0.75)
    assert metrics["mAP@0.5"] == pytest.approx(0.75)
    assert metrics["mAP@0.7"] == pytest.approx(1 / 3)
    assert metrics["mAP"] == pytest.approx((0.75 + 0.75 + 1 / 3) / 3)
    # top-2 of A: (40,49) misses, (0,9) hits; top-1 of B: (2,9) hits at 0.8 -> 2 of 3 truths
    assert metrics["recall@1x@0.5"] == pytest.approx(2 / 3)
    # all pairs with tIoU > 0: (0,9)-(0,9) 1.0, (20,24)-(20,29) 0.5, (2,9)-(0,9) 0.8
    assert metrics["mean_tiou"] == pytest.approx((1.0 + 0.5 + 0.8) / 3)
    assert metrics["matched"] == 3


def test_detection_metrics_without_matches_give_nan_tiou():
    metrics = detection_metrics([[(50, 60, 0.9)]], [[(0, 9)]])
    assert metrics["mAP"] == 0.0 and metrics["recall@1x@0.5"] == 0.0
    assert math.isnan(metrics["mean_tiou"]) and metrics["matched"] == 0


def test_match_segments_is_greedy_by_tiou_and_one_to_one():
    # pred 0 (0,9) vs truth 0 (4,13): 6/14; pred 1 (5,14) vs truth 0: 9/11; pred 0 vs truth 1 (0,3): 4/10
    # greedy: (1, 0) first at 9/11, then (0, 1) at 0.4; pred 1 vs truth 1 does not overlap
    assert match_segments([(0, 9), (5, 14)], [(4, 13), (0, 3)]) == [
        (1, 0, pytest.approx(9 / 11)), (0, 1, pytest.approx(0.4))]
    assert match_segments([(0, 3)], [(5, 9)]) == []


def test_frame_labels():
    assert frame_labels([(1, 2, "a"), (4, 4, "b")], 6) == ["background", "a", "a", "background", "b", "background"]
    assert frame_labels([(4, 9, "c")], 6, background="-") == ["-", "-", "-", "-", "c", "c"]


BG = "background"
# Episode 1: true a a a a bg bg b b b b; predicted a a a bg bg b b b c c
TRUE_1 = ["a"] * 4 + [BG] * 2 + ["b"] * 4
PRED_1 = ["a"] * 3 + [BG] * 2 + ["b"] * 3 + ["c"] * 2
# Episode 2: true x*8 bg*2; predicted bg*6 x*4
TRUE_2 = ["x"] * 8 + [BG] * 2
PRED_2 = [BG] * 6 + ["x"] * 4


def test_segmentation_metrics_against_hand_computed_values():
    metrics = segmentation_metrics([PRED_1, PRED_2], [TRUE_1, TRUE_2])
    # frames right: episode 1 -> 0,1,2 (a), 4 (bg), 6,7 (b) = 6; episode 2 -> 6,7 (x) = 2; 8 of 20
    assert metrics["accuracy"] == pytest.approx(40.0)
    # edit: [a, b, c] vs [a, b] -> distance 1, longest 3 -> 66.67; [x] vs [x] -> 100; mean 83.33
    assert metrics["edit"] == pytest.approx((100 * (1 - 1 / 3) + 100) / 2)
    # runs (exclusive ends): ep1 predicted a[0,3) b[5,8) c[8,10), true a[0,4) b[6,10):
    #   a-a IoU 3/4, b-b IoU 2/5, c no same label -> FP always
    # ep2 predicted x[6,10), true x[0,8): IoU 2/10
    # @10: tp 3 fp 1 fn 0 -> P 3/4 R 1 -> F1 6/7; @25: tp 2 fp 2 fn 1 -> P 1/2 R 2/3 -> 4/7;
    # @50: tp 1 fp 3 fn 2 -> P 1/4 R 1/3 -> 2/7
    assert metrics["F1@10"] == pytest.approx(100 * 6 / 7)
    assert metrics["F1@25"] == pytest.approx(100 * 4 / 7)
    assert metrics["F1@50"] == pytest.approx(100 * 2 / 7)


def test_segmentation_metrics_on_background_only_episodes():
    metrics = segmentation_metrics([[BG, BG]], [[BG, BG]])
    assert metrics["accuracy"] == 100.0 and metrics["edit"] == 100.0  # two empty sequences: 100
    assert math.isnan(metrics["F1@50"])
    with pytest.raises(ValueError):
        segmentation_metrics([[BG]], [[BG, BG]])


def test_boundary_mae_is_symmetric_and_charges_empty_sides():
    predictions = [[(2, 9)], [], [(1, 2)], []]
    truths = [[(0, 9), (20, 29)], [(5, 10)], [], []]
    # ep1 starts: truths 0,20 -> nearest 2: 2, 18; predicted 2 -> nearest true 0: 2
    #     ends:   truths 9,29 -> nearest 9: 0, 20; predicted 9 -> 0          -> sum 42 over 6
    # ep2 (50 frames) has truths only: 2 boundaries x 50; ep3 (30) predictions only: 2 x 30
    # ep4 contributes nothing. (42 + 100 + 60) / 10 = 20.2
    assert boundary_mae(predictions, truths, [100, 50, 30, 40]) == pytest.approx(20.2)
    assert math.isnan(boundary_mae([[]], [[]], [10]))


def test_count_accuracy():
    assert count_accuracy([2, 3, 1], [2, 2, 1]) == pytest.approx(2 / 3)
    assert math.isnan(count_accuracy([], []))
