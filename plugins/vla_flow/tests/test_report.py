"""eval's numbers on fixed predictions, eval.json's fields, and the rollout's table."""

from types import SimpleNamespace

import numpy as np
import pytest

from qvl_vla_flow.config import VlaFlowConfig
from qvl_vla_flow.metrics import chunk_statistics
from qvl_vla_flow.samples import SplitInfo


def fixed_samples_and_predictions(task):
    """21 chunks of random actions (binary channels pressed or released), the predictions the
    actions plus noise, two samplers at two step counts in the sweep."""
    space = task.action_space
    rng = np.random.default_rng(7)
    samples, predictions = [], []
    for episode in range(3):
        for step in range(7):
            actions = np.clip(rng.normal(0, 0.6, (task.chunk_size, space.dim)), -1, 1).astype(np.float32)
            for i in space.binary:
                actions[:, i] = np.where(rng.random(task.chunk_size) > 0.6, 1.0, -1.0)
            valid = np.zeros(task.chunk_size, dtype=bool)
            valid[: max(1, task.chunk_size - step)] = True
            samples.append({"actions": actions, "valid": valid, "episode": f"ep{episode}", "step": step})
            chunk = actions + rng.normal(0, 0.3, actions.shape)
            predictions.append({"chunk": chunk.tolist(), "episode": f"ep{episode}", "step": step})
    every = np.concatenate([s["actions"] for s in samples])
    statistics = {"mean": every.mean(0).tolist(), "majority": np.where((every > 0).mean(0) > 0.5, 1.0, -1.0).tolist()}
    rng = np.random.default_rng(3)
    for p, s in zip(predictions, samples):
        p["sweep"] = {f"{method}/{k}": chunk_statistics(np.asarray(p["chunk"]) + rng.normal(0, 0.1 * k, (task.chunk_size,
                                                                                                           space.dim)),
                                                        s["actions"], s["valid"], space)
                      for method in ("euler", "heun") for k in (1, 4)}
    return samples, predictions, statistics


def test_eval_on_fixed_predictions_keeps_its_numbers_and_eval_json_fields(tmp_path):
    from qvl_vla_flow.report import evaluate_predictions

    task = VlaFlowConfig()
    samples, predictions, statistics = fixed_samples_and_predictions(task)
    result = evaluate_predictions(SimpleNamespace(task=task), predictions, samples, SplitInfo(statistics), tmp_path)
    metrics = result.to_dict()
    # the fields and numbers eval.json had before evaluate returned an EvalResult (checked against that code)
    assert set(metrics) == {"samples", "sampler", "mse", "key_accuracy", "button_accuracy", "jerk", "true_jerk",
                            "first_step", "mse_per_dim", "accuracy_per_channel", "baselines", "sweep", "plots"}
    assert (metrics["samples"], metrics["sampler"]) == (21, f"{task.sampler}/{task.sampling_steps}")
    assert {key: metrics[key] for key in ("mse", "key_accuracy", "button_accuracy", "jerk")} == pytest.approx(
        {"mse": 0.0883888506655346, "key_accuracy": 0.9998552612534376, "button_accuracy": 1.0,
         "jerk": 7.840295546130442})
    assert metrics["first_step"] == pytest.approx({"mse": 0.09658381036799799, "key_accuracy": 1.0})
    mean = metrics["baselines"]["mean_action"]
    assert (mean["mse"], mean["key_accuracy"]) == pytest.approx((0.7768834236507379, 0.5914025184541902))
    assert mean["first_step"] == pytest.approx({"mse": 0.7547353459128681, "key_accuracy": 0.6326530612244898})
    assert metrics["baselines"]["majority_keys"]["mse"] == pytest.approx(1.5393674800295614)
    assert list(metrics["sweep"]) == ["euler/1", "euler/4", "heun/1", "heun/4"]
    assert [p.rsplit("/", 1)[-1] for p in metrics["plots"]] == ["chunks.png", "sampling_steps.png"]
    assert result.table().splitlines()[3:] == [
        "| mean_action | 0.777 | 0.591 | - | 0.755 | 0.633 | - |", "| majority_keys | 1.539 | 0.591 | - | 1.472 | 0.633 | - |"]


def test_the_rollout_table_is_the_model_against_random_and_expert_with_wilson_intervals():
    from qvl_vla_flow.rollout_report import format_table

    def policy(successes, episodes, low, high):
        return {"episodes": episodes, "successes": successes, "success_rate": successes / episodes,
                "ci95": [low, high], "mean_steps": 40.5, "steps_to_success": None if not successes else 30.0}

    summary = {"policies": {"model": policy(6, 10, 0.3127, 0.8318), "random": policy(0, 10, 0.0, 0.2775),
                            "expert": policy(9, 10, 0.5958, 0.9821)}}
    assert format_table(summary).splitlines() == [
        "| method | success rate (95 % CI) | successes | episodes | mean steps | steps to success |",
        "|---|---|---|---|---|---|",
        "| model | 0.600 [0.313, 0.832] | 6 | 10 | 40.500 | 30.000 |",
        "| random | 0.000 [0.000, 0.278] | 0 | 10 | 40.500 | - |",
        "| expert | 0.900 [0.596, 0.982] | 9 | 10 | 40.500 | 30.000 |"]
