"""eval's numbers on fixed predictions, and what the runner writes from them."""

import json

import pytest

TINY = ("task.synthetic.episodes=16", "task.synthetic.max_frames=24", "task.num_frames=6", "task.test_fraction=0.5",
        "task.val_fraction=0.2")


def fixed_predictions(episodes):
    """The true segments, every second episode's ends one frame late (clipped), every third's last
    segment missing and every fourth answer invalid JSON."""
    from qvl_segment.answers import writable_text

    predictions = []
    for k, episode in enumerate(episodes):
        rows = [{"start_frame": s.start_frame, "end_frame": min(episode.num_frames - 1, s.end_frame + k % 2),
                 "score": 1.0 - 0.1 * j, "skill": s.skill, "action_text": writable_text(s.action_text)}
                for j, s in enumerate(episode.segments)]
        if k % 3 == 2:
            rows = rows[:-1]
        predictions.append({"segments": rows, "valid": k % 4 != 3})
    return predictions


@pytest.fixture
def test_split(qvl_host, tmp_path, monkeypatch):
    from qvl.config import load_config

    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    task = qvl_host.task("segment")
    config = load_config(task, [], [*TINY, "train.eval_samples=2"])
    return task, config, qvl_host.call("build_dataset", task=task, config=config, split="test")


def test_eval_json_keeps_the_models_metrics_at_its_top_level_and_the_runner_writes_the_table(
        test_split, qvl_host, tmp_path):
    from qvl.runner.evaluation import scored

    task, config, data = test_split
    info = data.info
    assert len(data) == len(info.episodes) == 6 and info.skills == ["grasp", "lift", "move", "place", "reach"]
    out = tmp_path / "eval"
    out.mkdir()
    metrics = scored(qvl_host.call, task, config, fixed_predictions(info.episodes), data, out)
    # the numbers these predictions had before evaluate returned an EvalResult (checked against that code)
    assert {key: metrics[key] for key in ("mAP@0.5", "mAP", "mean_tiou", "boundary_mae", "k_accuracy", "accuracy",
                                          "edit", "F1@50", "json_valid", "matched", "text_matched")} == pytest.approx(
        {"mAP@0.5": 15 / 17, "mAP": 15 / 17, "mean_tiou": 0.9088888888888891, "boundary_mae": 0.453125,
         "k_accuracy": 4 / 6, "accuracy": 91.53846153846153, "edit": 91.66666666666667, "F1@50": 93.75,
         "json_valid": 2 / 6, "matched": 15, "text_matched": 15})
    assert (metrics["episodes"], metrics["mode"], metrics["oracles"]) == (6, "both", ["uniform_true_k"])
    oracle = metrics["baselines"]["uniform_true_k"]
    assert (oracle["k_accuracy"], oracle["mAP@0.5"], oracle["boundary_mae"]) == \
        (1.0, pytest.approx(0.553921568627451), pytest.approx(1.5147058823529411))
    assert metrics["baselines"]["frame_difference"]["mAP"] == pytest.approx(0.21132897603485842)
    table = (out / "comparison.md").read_text()
    assert table.splitlines()[2].startswith("| model | 0.882 | 0.882 |")
    assert "| uniform_true_k (oracle K) | 0.941 | 0.554 |" in table and table in metrics["report"] + "\n"
    assert (out / "comparison.png").exists()
    json.dumps(metrics)  # eval.json


def test_validation_scores_the_first_episodes_with_the_whole_splits_info(test_split, qvl_host, tmp_path):
    from qvl.runner.assembly import checked_dataset
    from qvl.runner.evaluation import flatten_metrics, scored

    task, config, data = test_split
    first = checked_dataset(qvl_host.call, task, config, "test", config.train.eval_samples)
    assert len(first) == 2 and first.info == data.info
    metrics = scored(qvl_host.call, task, config, fixed_predictions(data.info.episodes)[:2], first, tmp_path)
    assert metrics["episodes"] == 2
    assert "val/mAP@0.5" in flatten_metrics(metrics, "val")  # the default train.best_metric
