"""eval's numbers on fixed predictions: the whole split, and validation's first samples."""

import json

import pytest

TINY = ("task.synthetic.train_episodes=3", "task.synthetic.val_episodes=2", "task.synthetic.frames=6")


@pytest.fixture
def val_split(tmp_path, qvl_host):
    from qvl.config import load_config

    config = load_config(qvl_host.task("reward"), [], [f"task.data_dir={str(tmp_path / 'lerobot')!r}", *TINY])
    qvl_host.task("reward").stages["make-data"](config)
    return config, qvl_host.call("build_dataset", task=qvl_host.task("reward"), config=config, split="val")


def fixed_predictions(refs):
    """Right on every even frame, one bin too high on the others."""
    return [{"episode": r.episode, "frame": r.frame, "timestamp": r.timestamp,
             "class": r.label if k % 2 == 0 else (r.label + 1) % 4, "probabilities": [0.25] * 4}
            for k, r in enumerate(refs)]


def test_eval_scores_the_whole_split_from_its_info_without_decoding_frames(val_split, qvl_host, tmp_path):
    from qvl.runner.evaluation import scored

    config, data = val_split
    refs = data.info.refs
    assert [r.label for r in refs] == [1, 1, 2, 2, 3, 3, 0, 0, 1, 1, 1, 1]
    metrics = scored(qvl_host.call, qvl_host.task("reward"), config, fixed_predictions(refs), data, tmp_path)
    assert set(metrics) == {"model", "baselines", "classes"} and metrics["classes"] == 4
    model = metrics["model"]
    assert (model["samples"], model["accuracy"]) == (12, 0.5)
    assert model["confusion_matrix"] == [[1, 1, 0, 0], [0, 3, 3, 0], [0, 0, 1, 1], [1, 0, 0, 1]]
    assert model["per_class"]["1"] == {"precision": 0.75, "recall": 0.5, "f1": pytest.approx(0.6), "support": 6}
    assert (model["macro_f1"], model["mae_bins"]) == (pytest.approx(0.48333333333333334), pytest.approx(2 / 3))
    assert (model["spearman_per_episode"], model["episodes_with_spearman"]) == (pytest.approx(0.3969559421146348), 2)
    assert metrics["baselines"] == {"majority_class": {"class": 1, "accuracy": 0.5,
                                                       "macro_f1": pytest.approx(1 / 6), "mae_bins": pytest.approx(2 / 3)}}
    assert json.loads((tmp_path / "confusion_matrix.json").read_text())["matrix"] == model["confusion_matrix"]
    table = (tmp_path / "comparison.md").read_text().splitlines()
    assert table[2:] == ["| model | 0.500 | 0.483 | 0.667 | 0.397 |", "| majority class | 0.500 | 0.167 | 0.667 | - |"]
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 5000 and (tmp_path / "comparison.png").exists()


def test_validation_scores_its_first_samples_only(val_split, qvl_host, tmp_path):
    from qvl.runner.assembly import checked_dataset
    from qvl.runner.evaluation import scored

    config, data = val_split
    task = qvl_host.task("reward")
    first = checked_dataset(qvl_host.call, task, config, "val", 3)
    assert len(first) == 3 and first.info.refs == data.info.refs  # the whole split's info
    metrics = scored(qvl_host.call, task, config, fixed_predictions(data.info.refs[:3]), first, tmp_path)
    # labels 1, 1, 2 answered 1, 2, 2: until the samples protocol the accuracy was divided by all 12 frames
    assert (metrics["model"]["samples"], metrics["model"]["accuracy"]) == (3, pytest.approx(2 / 3))
    assert metrics["baselines"]["majority_class"]["accuracy"] == pytest.approx(2 / 3)
