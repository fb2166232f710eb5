"""Training from the prepared-sample cache gives the same batches as decoding the files each step."""

import os

import numpy as np
import pytest
import torch


@pytest.fixture
def tiny(tmp_path, qvl_run_stage):
    sets = (f"task.data_dir={str(tmp_path / 'data')!r}", "task.synthetic.train=6", "task.synthetic.val=2",
            "task.synthetic.test=2", "task.synthetic.width=320", "task.synthetic.height=240",
            "task.model_image_size=[64, 64]")
    qvl_run_stage("grasp", "make-data", *sets)
    return sets


@pytest.mark.parametrize("augment", [("task.augment.enabled=false",),
                                     ("task.augment.enabled=true", "task.augment.rotation_degrees=20")])
def test_cached_and_uncached_training_batches_are_identical(tiny, augment, qvl_host, qvl_tiny_backbone, monkeypatch,
                                                            tmp_path):
    from qvl.config import load_config

    from qvl_grasp.collate import TrainCollator

    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    task = qvl_host.task("grasp")
    cached_config = load_config(task, overrides=[*tiny, *augment])
    plain_config = load_config(task, overrides=[*tiny, *augment, "train.prepared_cache=false"])
    cached = qvl_host.call("build_dataset", task=task, config=cached_config, split="train")
    plain = qvl_host.call("build_dataset", task=task, config=plain_config, split="train")
    assert type(cached).__name__ == "WorkingCopies" and type(plain).__name__ == "GraspDataset"
    assert plain[0]["image"].size == (320, 240)
    if cached_config.task.augment.enabled:  # rotated each step: the working copy, 2x the model's size
        assert cached[0]["image"].size == (171, 128) and "shown_image" not in cached[0]
    else:  # kept at the model's size, with the size the rectangles are measured in
        assert cached[0]["shown_image"].size == (64, 64) and cached[0]["working_size"] == (171, 128)
        assert "image" not in cached[0]
    collate = TrainCollator(cached_config.task, qvl_tiny_backbone.processor, seed=0)
    for batch in ([0, 1, 2], [3, 4, 5]):
        a = collate([cached[i] for i in batch], rng=np.random.default_rng(7))
        b = collate([plain[i] for i in batch], rng=np.random.default_rng(7))
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_a_changed_image_rebuilds_the_cache(tiny, qvl_host, monkeypatch, tmp_path):
    from qvl.config import load_config

    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    task = qvl_host.task("grasp")
    config = load_config(task, overrides=list(tiny))
    first = qvl_host.call("build_dataset", task=task, config=config, split="train")
    again = qvl_host.call("build_dataset", task=task, config=config, split="train")
    assert again.prepared.folder == first.prepared.folder
    image = next((tmp_path / "data").rglob("train_seq00/rgb/scene_00000.png"))
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    changed = qvl_host.call("build_dataset", task=task, config=config, split="train")
    assert changed.prepared.folder != first.prepared.folder
    other_size = load_config(task, overrides=[*tiny, "task.model_image_size=[96, 64]"])
    assert qvl_host.call("build_dataset", task=task, config=other_size, split="train").prepared.folder not in (
        first.prepared.folder, changed.prepared.folder)
