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


def fixed_predictions():
    """Preference and similarity questions asked in both orders, progress clips of 6 trajectories,
    answered by a fixed rule; a greedy answer beside each (the model answers progress by its mean)."""
    rows = []
    for k in range(24):
        kind = "preference" if k < 12 else "similarity"
        truth = 1 + k % 2
        for swapped in (False, True):
            shown = 3 - truth if swapped else truth
            value = None if k == 5 and swapped else (shown if k % 4 else 3 - shown)
            rows.append({"sample_index": k, "sample_type": kind, "swapped": swapped, "truth": str(shown),
                         "task": f"task{k % 2}", "strategy": "rewind" if k % 3 else "suboptimal",
                         "trajectory_id": f"t{k % 6}", "cluster": f"t{k % 6}",
                         "positions": [0.3 + 0.02 * k, 0.9 - 0.03 * k] if kind == "preference" else
                         [1.0, 0.4 + 0.01 * k, 0.8 - 0.01 * k],
                         "value": value, "valid": value is not None, "greedy_value": shown})
    for k in range(36):
        truth = 10 * (k % 6) + 20
        value = min(100, truth + (k % 5) * 4 - 6)
        rows.append({"sample_index": 100 + k, "sample_type": "progress", "swapped": False, "truth": str(truth),
                     "task": f"task{k % 2}", "strategy": "forward_progress" if k % 4 else "different_task",
                     "trajectory_id": f"t{k // 6}", "cluster": f"t{k // 6}", "positions": [(truth - 20) / 60],
                     "value": value, "valid": True, "greedy_value": truth + 10})
    return rows


FIXED_CONFIG = SimpleNamespace(seed=0, task=SimpleNamespace(bootstrap=200, progress_answer="mean"),
                               eval=SimpleNamespace(save_vis=False))


def test_eval_on_fixed_predictions_keeps_its_numbers_and_eval_json_fields(tmp_path):
    from pathlib import Path

    from qvl_vqa.report import evaluate_predictions
    from qvl_vqa.samples import SplitInfo

    result = evaluate_predictions(FIXED_CONFIG, fixed_predictions(), SplitInfo(Path("/data/vqa"), "test", 41.5), tmp_path)
    metrics = result.to_dict()
    # the fields and numbers eval.json had before evaluate returned an EvalResult (checked against that code)
    assert set(metrics) == {"dataset_path", "split", "total_samples", "sample_types", "asked", "invalid_answers",
                            "preference", "similarity", "progress", "by_task", "by_strategy", "progress_answer",
                            "greedy_answers", "baselines", "train_mean_progress", "comparison", "paired_differences",
                            "report"}
    assert (metrics["dataset_path"], metrics["split"], metrics["asked"], metrics["invalid_answers"]) == \
        ("/data/vqa", "test", 84, 1)
    assert metrics["preference"] == {
        "count": 12, "correct": 9, "accuracy": 0.75, "accuracy_ci95": [0.5813, 0.9167], "answers_1_rate": 0.25,
        "invalid": 0, "pairs_in_both_orders": 12, "debiased_accuracy": 0.7083, "debiased_accuracy_ci95": [0.5406, 0.875],
        "order_consistency": 0.9167}
    assert metrics["progress"] == {
        "count": 36, "mae": 5.222, "mae_ci95": [4.8889, 5.5556], "rmse": 6.0, "rmse_ci95": [5.696, 6.3596],
        "spearman_per_trajectory": 0.9333, "spearman_ci95": [0.8667, 0.9833], "trajectories_with_spearman": 6,
        "invalid": 0}
    assert metrics["greedy_answers"]["progress"]["mae"] == 10.0
    assert metrics["baselines"]["constant_progress"]["progress"]["mae"] == 15.0  # answers round(41.5) = 42
    assert metrics["train_mean_progress"] == 41.5
    assert metrics["paired_differences"]["progress/mae"]["constant_progress"] == {
        "difference": -9.778, "difference_ci95": [-10.1111, -9.4444], "better": True}
    assert metrics["comparison"]["progress/mae"]["beats_all"]
    table = result.table().splitlines()
    assert table[2] == ("| model | 0.750 [0.581, 0.917] | 0.708 [0.541, 0.875] | 0.750 [0.581, 0.917] | "
                        "5.222 [4.889, 5.556] | 6.000 [5.696, 6.360] | 0.933 [0.867, 0.983] |")
    assert table[3].startswith("| model, greedy answers | 1.000") and table[6].startswith("| constant_progress | - | - | - | 15.000")
    assert result.table() in metrics["report"] + "\n"


def test_save_vis_draws_the_progress_curves_and_one_confusion_panel_per_type(tmp_path):
    from qvl_vqa.plots import plot_confusion, plot_progress

    assert plot_progress(fixed_predictions(), tmp_path / "progress.png").stat().st_size > 5000
    assert plot_confusion(fixed_predictions(), tmp_path / "confusion.png").stat().st_size > 5000
