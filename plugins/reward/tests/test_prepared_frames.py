"""Training from the prepared-frame cache gives the same batches as decoding the videos each step."""

import os

import torch


def test_cached_and_uncached_training_batches_are_identical(tmp_path, qvl_run_stage, qvl_host, qvl_tiny_backbone,
                                                            monkeypatch):
    from qvl.config import load_config

    from qvl_reward.collate import RewardCollator

    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    sets = [f"task.data_dir={str(tmp_path / 'lerobot')!r}", "task.synthetic.train_episodes=2",
            "task.synthetic.val_episodes=1", "task.synthetic.frames=6", "task.image_size=[64, 64]"]
    qvl_run_stage("reward", "make-data", *sets)
    task = qvl_host.task("reward")
    config = load_config(task, overrides=sets)
    cached = qvl_host.call("build_dataset", task=task, config=config, split="train")
    plain = qvl_host.call("build_dataset", task=task,
                          config=load_config(task, overrides=[*sets, "train.prepared_cache=false"]), split="train")
    assert type(cached.items).__name__ == "PreparedFrames" and len(cached) == len(plain) == 12
    assert cached.info == plain.info  # the frames' references, for evaluate
    collate = RewardCollator(config.task, qvl_tiny_backbone.processor, with_labels=True)  # prompts tokenized once
    whole = RewardCollator(config.task, qvl_tiny_backbone.processor, with_labels=True, cached_prompts=False)
    for batch in ([0, 5, 11], [3, 7], [1, 2]):
        a, b = collate([cached[i] for i in batch]), whole([plain[i] for i in batch])
        assert a.keys() == b.keys()
        for key in a:
            if torch.is_tensor(a[key]):
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
            else:
                assert a[key] == b[key]
    assert qvl_host.call("build_dataset", task=task, config=config, split="train").items.prepared.folder == \
        cached.items.prepared.folder  # reused
    video = next((tmp_path / "lerobot" / "videos").rglob("*.mp4"))
    os.utime(video, ns=(video.stat().st_atime_ns, video.stat().st_mtime_ns + 10**9))
    assert qvl_host.call("build_dataset", task=task, config=config, split="train").items.prepared.folder != \
        cached.items.prepared.folder  # a changed video rebuilds it
