import json
import subprocess
import sys

import pytest
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_data(tmp_path):
    return (f"task.data_dir={str(tmp_path / 'data')!r}", "task.synthetic.train=8", "task.synthetic.val=4",
            "task.synthetic.test=3", "task.synthetic.width=160", "task.synthetic.height=120",
            "task.model_image_size=[64, 64]")


@pytest.mark.parametrize("scene", ["single", "multi"])
def test_make_data_train_eval_predict_on_a_tiny_split(qvl_run_stage, qvl_run_dir, qvl_quick_run, tiny_data,
                                                      tmp_path, scene):
    tiny_data = (*tiny_data, f"task.synthetic.scene={scene}")
    root = qvl_run_stage("grasp", "make-data", *tiny_data)
    assert sorted(p.name for p in (root / "data_split").iterdir()) == ["test_0.txt", "training_0.txt",
                                                                        "validation_0.txt"]
    assert len((root / "data_split" / "training_0.txt").read_text().splitlines()) == 8

    trained = qvl_run_stage("grasp", "train", *qvl_quick_run, *tiny_data)
    assert trained.steps == 2

    evaluated = qvl_run_stage("grasp", "eval", *qvl_quick_run, *tiny_data)
    metrics = evaluated.metrics
    assert metrics["model"]["images"] == 4 and metrics["model"]["invalid_rate"] == 0.0  # constrained
    assert set(metrics["baselines"]) == {"random", "pca", "min_area_rect", "largest_object", "sizes"}
    assert metrics["baselines"]["pca"]["images"] == 4
    out = evaluated.out_dir
    assert json.loads((out / "eval.json").read_text()) == metrics
    table = (out / "comparison.md").read_text()
    assert "| model |" in table and "| pca (oracle mask) |" in table and "| largest object |" in table
    assert (out / "comparison.png").stat().st_size > 5000 and (out / "examples.png").stat().st_size > 5000
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(r["valid"] and len(r["answers"]) == 1 and len(r["corners"]) == 4 for r in rows)
    # a multi-object scene's prompt names its target; a single object needs no name
    assert all(r.get("instruction", "").startswith("Grasp the ") == (scene == "multi") for r in rows)

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (200, 100), (30, 90, 160)).save(folder / "a.png")
    Image.new("RGB", (90, 120), (200, 90, 60)).save(folder / "b.jpg")
    predicted = qvl_run_stage("grasp", "predict", *tiny_data, "task.ensemble.predict=3",
                              predict_input=str(folder), save_vis=True)
    grasps = json.loads((predicted.out_dir / "grasps.json").read_text())
    assert [g["image"] for g in grasps] == ["a.png", "b.jpg"]
    for row, size in zip(grasps, [(200, 100), (90, 120)]):
        assert row["valid"] and set(row["grasp"]) == {"cx", "cy", "theta", "w", "h"}
        assert 0 <= row["grasp"]["cx"] <= size[0] and 0 <= row["grasp"]["cy"] <= size[1]
        assert -90 <= row["grasp"]["theta"] < 90
    assert [len(p["answers"]) for p in predicted.predictions] == [3, 3]  # the ensemble's members
    assert predicted.metrics["pictures"] == 2
    assert Image.open(predicted.out_dir / "vis" / "a.png").size == (200, 100)


def test_bad_annotation_is_one_clear_error_from_the_cli(tmp_path):
    root = tmp_path / "ocid"
    seq = root / "seq1"
    (seq / "rgb").mkdir(parents=True)
    (seq / "Annotations").mkdir()
    (root / "data_split").mkdir()
    Image.new("RGB", (64, 48)).save(seq / "rgb" / "im.png")
    (seq / "Annotations" / "im.txt").write_text("1 2\n3 4\n5 6\n")
    (root / "data_split" / "training_0.txt").write_text("seq1,im.png\n")
    result = subprocess.run([sys.executable, "-m", "qvl", "run", "grasp", "train", "--run-dir",
                             str(tmp_path / "run"), "--set", f"task.data_dir={str(root)!r}"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert f"{seq / 'Annotations' / 'im.txt'}, line 1: incomplete rectangle; 3 corner lines" in result.stderr
    assert "Traceback" not in result.stderr
