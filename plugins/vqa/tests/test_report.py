"""The report's comparisons: intervals side by side, and the paired difference on the same resamples."""

from types import SimpleNamespace

import numpy as np

from qvl_vqa.report import comparison, paired_differences, scores

CONFIG = SimpleNamespace(seed=0, task=SimpleNamespace(bootstrap=500))


def progress_rows(trajectories=20, per_trajectory=5):
    return [{"sample_type": "progress", "truth": "50", "cluster": f"t{t}", "trajectory_id": f"t{t}",
             "strategy": "prefix", "swapped": False} for t in range(trajectories) for _ in range(per_trajectory)]


def test_a_system_against_itself_differs_by_exactly_zero():
    rows = progress_rows()
    answers = [50 + (k % 7) * 3 for k in range(len(rows))]
    differences = paired_differences(rows, answers, {"same": list(answers)}, CONFIG)
    for metric in ("progress/mae", "progress/rmse"):
        assert differences[metric]["same"] == {"difference": 0.0, "difference_ci95": [0.0, 0.0], "better": False}


def test_a_consistent_gain_on_hard_and_easy_trajectories_is_found_paired_though_the_intervals_overlap():
    # trajectories range from easy (error 10) to hard (error 60); the model is 5 points better on each
    rows = progress_rows()
    difficulty = np.linspace(10, 60, 20)
    baseline = [int(50 + difficulty[k // 5]) for k in range(len(rows))]
    model = [int(50 + difficulty[k // 5] - 5) for k in range(len(rows))]
    side_by_side = comparison(scores(rows, model, CONFIG), {"baseline": scores(rows, baseline, CONFIG)})
    assert side_by_side["progress/rmse"]["beats"] == {"baseline": False}  # the two intervals overlap
    paired = paired_differences(rows, model, {"baseline": baseline}, CONFIG)
    for metric in ("progress/mae", "progress/rmse"):
        low, high = paired[metric]["baseline"]["difference_ci95"]
        assert paired[metric]["baseline"]["better"] and high < 0
        assert low <= paired[metric]["baseline"]["difference"] <= high
    assert paired["progress/mae"]["baseline"]["difference"] == -5.0


def test_a_worse_model_is_not_better_and_baselines_without_progress_answers_are_left_out():
    rows = progress_rows()
    paired = paired_differences(rows, [0] * len(rows), {"good": [50] * len(rows), "none": [None] * len(rows)},
                                CONFIG)
    assert set(paired["progress/rmse"]) == {"good"}
    assert paired["progress/rmse"]["good"]["difference"] == 50.0
    assert not paired["progress/rmse"]["good"]["better"]
