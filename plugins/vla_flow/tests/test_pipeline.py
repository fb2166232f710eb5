"""record -> convert -> features -> train -> eval through qvl's runner, and the frozen backbone."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("miniworld") is None, reason="needs qvl-vla-flow[sim]")]

TINY = ("task.record.episodes=8", "task.record.canvas=64", "task.record.max_steps=30", "task.chunk_size=8",
        "task.hidden_dim=32", "task.num_layers=2", "task.eval_steps=[1, 2]", "train.eval_samples=4",
        "task.val_fraction=0.2", "task.test_fraction=0.3", "task.rollout.validate_episodes=2",
        "task.rollout.max_steps=6")


def folders(parent):
    """What qvl built in ``parent`` (not its lock files)."""
    return [p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]


def test_a_new_users_train_records_converts_and_encodes_then_eval_scores_against_baselines(
        qvl_run_stage, qvl_quick_run, qvl_run_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("QVL_CACHE", str(cache))
    assert qvl_run_stage("vla_flow", "train", *qvl_quick_run, *TINY).steps == 2
    # validation rolled the policy out in Miniworld: the best checkpoint is chosen by success rate
    validated = [json.loads(line) for line in (qvl_run_dir / "metrics.jsonl").read_text().splitlines()
                 if "val/success" in line]
    assert validated and validated[-1]["val/success"] in (0.0, 0.5, 1.0)
    assert 1 <= validated[-1]["val/rollout_steps"] <= 6 and "val/mse" in validated[-1]
    (recordings,) = folders(cache / "vla_flow" / "recordings")
    assert len(list(recordings.glob("episode_*/video.mp4"))) == 8
    (data,) = folders(cache / "vla_flow" / "data")
    report = json.loads((data / "convert_report.json").read_text())
    assert sum(report["episodes"].values()) == 8 and not report["skipped"]
    assert len(folders(cache / "features")) == 1

    evaluated = qvl_run_stage("vla_flow", "eval", *TINY)
    metrics = evaluated.metrics
    assert metrics["samples"] == 4
    assert set(metrics["baselines"]) == {"mean_action", "majority_keys"}
    assert set(metrics["sweep"]) == {"euler/1", "euler/2", "heun/1", "heun/2"}
    assert 0 <= metrics["key_accuracy"] <= 1 and metrics["mse"] > 0
    assert len(metrics["mse_per_dim"]) == 14
    for plot in metrics["plots"]:
        assert Path(plot).is_file() and Path(plot).stat().st_size > 1000
    predictions = [json.loads(line) for line in (evaluated.out_dir / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions[0]["chunk"]) == 8 and len(predictions[0]["chunk"][0]) == 14


def test_no_gradient_reaches_the_frozen_backbone(qvl_tiny_backbone):
    from qvl.features import FeatureSpec, extract
    from PIL import Image

    from qvl_vla_flow.policy import VlaFlowPolicy

    backbone = qvl_tiny_backbone
    parameters = list(backbone.model.parameters())
    for parameter in parameters:
        parameter.requires_grad_(True)  # even if it could train, no gradient may reach it
    try:
        spec = FeatureSpec(pooling="grid:4", text="last", image_size=(64, 64))
        frames = [Image.new("RGB", (64, 64), colour) for colour in ("red", "green", "blue")]
        features = extract(backbone, [{"images": [frame], "text": "go to the red box"} for frame in frames], spec)
        window = torch.stack([torch.cat([f["visual"][0], f["text"][None]]) for f in features])[None]
        policy = VlaFlowPolicy(feature_dim=backbone.hidden_size, tokens_per_frame=5, num_frames=3, action_dim=14,
                               state_dim=14, chunk_size=4, hidden_dim=32, num_layers=2, num_heads=4)
        policy.loss(window, torch.zeros(1, 14), torch.zeros(1, 4, 14)).backward()
        assert all(parameter.grad is None for parameter in parameters)
        assert all(parameter.grad is not None for parameter in policy.parameters())
    finally:
        for parameter in parameters:
            parameter.requires_grad_(False)
