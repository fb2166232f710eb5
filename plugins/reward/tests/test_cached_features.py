"""``task.features = "cached"``: frozen features computed once, a head trained on them without a backbone."""

import json
import types

import pytest

import qvl

pytestmark = pytest.mark.slow

TINY = ("task.synthetic.train_episodes=3", "task.synthetic.val_episodes=2", "task.synthetic.frames=6",
        "task.image_size=[64, 64]")
CACHED = ("task.features=cached", "backbone.finetune=frozen", "task.cached.head_hidden=16")


@pytest.fixture
def tiny(qvl_run_stage, tmp_path):
    overrides = (f"task.data_dir={str(tmp_path / 'lerobot')!r}", f"task.cached.root={str(tmp_path / 'features')!r}",
                 *TINY, *CACHED)
    qvl_run_stage("reward", "make-data", *overrides)
    return overrides


@pytest.fixture
def recorder(qvl_host):
    """Records the stages the runner asks ``load_backbone`` for, and counts feature extractions."""
    import qvl.features

    seen = types.SimpleNamespace(stages=[], extracted=0)

    @qvl.hookimpl(wrapper=True)
    def load_backbone(task, stage):
        seen.stages.append(stage)
        return (yield)

    original = qvl.features.extract

    def counting_extract(backbone, inputs, spec):
        seen.extracted += len(inputs)
        return original(backbone, inputs, spec)

    name = qvl_host.pm.register(types.SimpleNamespace(load_backbone=load_backbone), name="record-backbone")
    qvl.features.extract = counting_extract
    try:
        yield seen
    finally:
        qvl.features.extract = original
        qvl_host.pm.unregister(name=name)


def _new_process():
    """Forget the plugin's in-process extractor, as a second ``qvl run`` would start without it."""
    from qvl.features import forget_shared_caches

    forget_shared_caches()


def test_train_eval_predict_from_cached_features_without_loading_the_backbone(
        qvl_run_stage, qvl_quick_run, tiny, recorder, tmp_path):
    _new_process()
    result = qvl_run_stage("reward", "train", *qvl_quick_run, *tiny, "train.eval_every=1", "train.eval_samples=4")
    assert result.steps == 2 and recorder.stages == []  # the runner never loaded a backbone
    assert recorder.extracted == 18 + 12  # every train frame (3 x 6) and every val frame (2 x 6), once
    folders = sorted(p for p in (tmp_path / "features").iterdir() if not p.name.startswith("."))
    assert len(folders) == 2 and all(qvl.build.read_marker(f)["kind"] == "features" for f in folders)
    rows = [json.loads(line) for line in (result.run_dir.path / "metrics.jsonl").read_text().splitlines()]
    assert {"val/loss", "val/model/accuracy"} <= {key for row in rows for key in row}  # validation ran
    assert not (result.run_dir.last_checkpoint() / "backbone").exists()

    evaluated = qvl_run_stage("reward", "eval", *tiny, "eval.batch_size=4", "eval.max_samples=1000")
    assert (evaluated.metrics["model"]["samples"], evaluated.metrics["classes"]) == (12, 4), evaluated.metrics
    assert recorder.stages == [] and recorder.extracted == 30  # eval decoded the cached val split

    predicted = qvl_run_stage("reward", "predict", *tiny, "task.predict_every=2", "predict.batch_size=4",
                              "predict.max_samples=1000")
    rewards = json.loads((predicted.out_dir / "rewards.json").read_text())
    assert [e["episode"] for e in rewards["episodes"]] == [3, 4]
    frames = rewards["episodes"][0]["frames"]
    assert [f["frame"] for f in frames] == [0, 2, 4]
    assert all(sum(f["probabilities"]) == pytest.approx(1, abs=1e-3) for f in frames)
    assert recorder.extracted == 30 + 6  # predict's frames (every 2nd of 2 episodes) went through the backbone


def test_a_second_train_reuses_the_cache(qvl_run_stage, qvl_quick_run, tiny, recorder, tmp_path):
    from qvl.build import read_marker

    _new_process()
    qvl_run_stage("reward", "train", *qvl_quick_run, *tiny, run_dir=tmp_path / "first")
    assert recorder.extracted == 18
    (folder,) = [p for p in (tmp_path / "features").iterdir() if not p.name.startswith(".")]
    created = read_marker(folder)["created"]

    _new_process()
    second = qvl_run_stage("reward", "train", *qvl_quick_run, *tiny, run_dir=tmp_path / "second")
    assert second.steps == 2 and recorder.extracted == 18  # nothing recomputed
    assert read_marker(folder)["created"] == created

    _new_process()  # another feature setting is another folder, never a stale one
    qvl_run_stage("reward", "train", *qvl_quick_run, *tiny, "task.cached.pooling=mean", run_dir=tmp_path / "third")
    assert recorder.extracted == 36
    assert len([p for p in (tmp_path / "features").iterdir() if not p.name.startswith(".")]) == 2


def test_cached_features_match_the_end_to_end_pooled_state(qvl_host, tiny):
    """The cached ``text`` vector is the hidden state the end-to-end mode pools, for the same frame."""
    import torch

    from qvl.config import load_config

    from qvl_reward import cached
    from qvl_reward.collate import RewardCollator
    from qvl_reward.data import split_frames
    from qvl_reward.head import pooled_states

    config = load_config(qvl_host.task("reward"), [], list(tiny))
    frames = split_frames(config, "val")
    data = cached.with_features(config, frames)
    backbone = cached.extractor(config).backbone
    batch = RewardCollator(config.task, backbone.processor, with_labels=False)([frames[0], frames[1]])
    batch.pop("reward_frames")
    with torch.no_grad():
        expected = pooled_states(backbone.model, batch)
    width = backbone.hidden_size
    got = torch.stack([data[0]["features"][-width:], data[1]["features"][-width:]])
    torch.testing.assert_close(got, expected.float(), atol=1e-4, rtol=1e-4)
    assert data[0]["features"].numel() == cached.feature_width(config) == width * (3 * 4 + 1)


@pytest.mark.parametrize(("setting", "message"), [
    ("backbone.finetune=full", "task.features = 'cached' .* backbone.finetune = 'full': set backbone.finetune=frozen"),
    ("backbone.finetune=lora", "backbone.finetune = 'lora'"),
    ("task.cached.pooling=none", "task.cached.pooling = 'none'"),
])
def test_settings_that_contradict_the_cached_mode_are_refused(qvl_run_stage, qvl_quick_run, tiny, setting, message):
    with pytest.raises(qvl.UserError, match=message):
        qvl_run_stage("reward", "train", *qvl_quick_run, *tiny, setting)
