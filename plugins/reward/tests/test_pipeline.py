import json

import pytest
import torch

pytestmark = pytest.mark.slow

TINY = ("task.synthetic.train_episodes=3", "task.synthetic.val_episodes=2", "task.synthetic.frames=6",
        "task.image_size=[64, 64]")


@pytest.fixture
def tiny(tmp_path):
    return (f"task.data_dir={str(tmp_path / 'lerobot')!r}", *TINY)


def test_make_data_train_eval_predict_on_a_tiny_dataset(qvl_run_stage, qvl_quick_run, tiny):
    from qvl.lerobot import LeRobotDataset

    root = qvl_run_stage("reward", "make-data", *tiny)
    source = LeRobotDataset(root, ["observation.images.cam_high", "observation.images.cam_left_wrist",
                                   "observation.images.cam_right_wrist"])
    assert source.version == "v3.0" and len(source.episodes) == 5
    assert sorted(p.parent.parent.name for p in (root / "videos").glob("*/chunk-000/file-000.mp4")) == [
        "observation.images.cam_high", "observation.images.cam_left_wrist", "observation.images.cam_right_wrist"]

    assert qvl_run_stage("reward", "train", *qvl_quick_run, *tiny).steps == 2
    evaluated = qvl_run_stage("reward", "eval", *tiny, "eval.batch_size=4", "eval.max_samples=1000")
    metrics = evaluated.metrics
    assert metrics["model"]["samples"] == 12 and metrics["classes"] == 4
    assert sum(map(sum, metrics["model"]["confusion_matrix"])) == 12
    assert set(metrics["model"]["per_class"]) == {"0", "1", "2", "3"}
    confusion = metrics["model"]["confusion_matrix"]  # rows: true class
    true_counts = [sum(row) for row in confusion]
    assert metrics["model"]["accuracy"] == pytest.approx(sum(confusion[i][i] for i in range(4)) / 12)
    majority = metrics["baselines"]["majority_class"]
    assert majority["accuracy"] == pytest.approx(true_counts[majority["class"]] / 12)
    assert json.loads((evaluated.out_dir / "confusion_matrix.json").read_text())["matrix"] == \
        metrics["model"]["confusion_matrix"]
    assert (evaluated.out_dir / "confusion_matrix.png").stat().st_size > 5000

    predicted = qvl_run_stage("reward", "predict", *tiny, "task.predict_every=2", "predict.max_samples=1000")
    rewards = json.loads((predicted.out_dir / "rewards.json").read_text())
    assert [e["episode"] for e in rewards["episodes"]] == [3, 4]
    assert [f["frame"] for f in rewards["episodes"][0]["frames"]] == [0, 2, 4]
    for frame in rewards["episodes"][0]["frames"]:
        assert len(frame["probabilities"]) == 4 and sum(frame["probabilities"]) == pytest.approx(1, abs=1e-3)
        assert frame["class"] == max(range(4), key=frame["probabilities"].__getitem__)
    assert (predicted.out_dir / "reward_curve_episode_000003.png").stat().st_size > 5000


def test_head_and_adapter_saved_together_reload_to_identical_logits(qvl_host, qvl_run_stage, qvl_run_dir,
                                                                    qvl_quick_run, tiny):
    """The model in memory at the end of training and the one reloaded from its checkpoint agree."""
    import types

    from qvl import hookimpl
    from qvl.config import load_config
    from qvl.runner.assembly import load_parts
    from qvl.runner.rundir import RunDir

    captured = {}

    @hookimpl(wrapper=True)
    def loss(task, backbone, head, batch):
        captured.update(backbone=backbone, head=head)
        return (yield)

    qvl_run_stage("reward", "make-data", *tiny)
    name = qvl_host.pm.register(types.SimpleNamespace(loss=loss), name="capture")
    try:
        qvl_run_stage("reward", "train", *qvl_quick_run, *tiny, "backbone.finetune=lora", "train.lr=0.05")
    finally:
        qvl_host.pm.unregister(name=name)
    run = RunDir(qvl_run_dir)
    checkpoint = run.last_checkpoint()
    assert {"head.safetensors", "backbone"} <= {p.name for p in checkpoint.iterdir()}
    assert (checkpoint / "backbone" / "adapter_model.safetensors").is_file()

    task = qvl_host.task("reward")
    config = load_config(task, [], [], base=run.saved_config())
    reloaded = load_parts(qvl_host.call, task, config, checkpoint, stage="eval")
    data = qvl_host.call("build_dataset", task=task, config=config, split="val")
    samples = [data[i] for i in range(4)]
    logits = []
    for backbone, head in ((captured["backbone"], captured["head"]), (reloaded.backbone, reloaded.head)):
        backbone.model.eval()
        head.eval()
        collate = qvl_host.call("build_collator", task=task, config=config, backbone=backbone, stage="eval")
        batch = collate(samples)
        with torch.no_grad():
            decoded = qvl_host.call("decode", task=task, config=config, backbone=backbone, head=head, batch=batch)
        logits.append(torch.tensor([d["probabilities"] for d in decoded]))
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=0)
    # and training moved the head away from its initial state, so the comparison means something
    fresh = qvl_host.call("build_head", task=task, config=config, backbone=reloaded.backbone)
    assert not torch.equal(fresh.classifier.weight, reloaded.head.classifier.weight.cpu())
