"""Evaluation does its model-independent work once per data set."""

import attrs


def test_baselines_are_computed_once_and_only_the_pictures_decode_images(tmp_path, qvl_run_stage, qvl_host,
                                                                         monkeypatch):
    from qvl.config import load_config

    from qvl_grasp import readers
    from qvl_grasp.geometry import Grasp
    from qvl_grasp.report import evaluate_predictions

    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    sets = [f"task.data_dir={str(tmp_path / 'data')!r}", "task.synthetic.train=4", "task.synthetic.val=5",
            "task.synthetic.test=1", "task.synthetic.width=160", "task.synthetic.height=120", "task.eval_pictures=2"]
    qvl_run_stage("grasp", "make-data", *sets)
    task = qvl_host.task("grasp")
    config = load_config(task, overrides=sets)
    val = qvl_host.call("build_dataset", task=task, config=config, split="val")
    predictions = [{"id": val[i]["id"], "grasp": attrs.asdict(val[i]["grasps"][0])} for i in range(len(val))]

    decoded = {"image": 0, "mask": 0}
    image_loader, mask_loader = readers.load_image, readers.load_mask

    def count(kind, loader):
        def load(*args):
            decoded[kind] += 1
            return loader(*args)
        return load

    monkeypatch.setattr(readers, "load_image", count("image", image_loader))
    monkeypatch.setattr(readers, "load_mask", count("mask", mask_loader))
    first = evaluate_predictions(config, predictions, val, tmp_path)
    assert decoded == {"image": 2, "mask": 5}  # the two pictures; every mask, for the baselines
    assert first.model["success_rate"] == 1.0 and set(first.baselines) >= {"random", "pca", "min_area_rect"}
    second = evaluate_predictions(config, predictions, val, tmp_path)
    assert decoded == {"image": 4, "mask": 5}  # no mask decoded again: the baselines came from the cache
    assert second == first
    assert isinstance(val[0]["grasps"][0], Grasp)
    # what the runner makes of it: eval.json's fields as before, the table without the baselines' sizes
    assert set(first.to_dict()) == {"model", "baselines", "ensemble", "constrained"}
    assert set(first.to_dict()["baselines"]) == {"random", "pca", "min_area_rect", "largest_object", "sizes"}
    table = first.table().splitlines()
    assert table[0] == "| method | success | mean IoU | angle err (deg) | centre err (px) | invalid |"
    assert table[2] == "| model | 1.000 | 1.000 | 0.000 | 0.000 | 0.000 |"
    assert [row.split(" | ")[0] for row in table[3:]] == ["| random (oracle mask)", "| pca (oracle mask)",
                                                          "| min_area_rect (oracle mask)", "| largest object"]
