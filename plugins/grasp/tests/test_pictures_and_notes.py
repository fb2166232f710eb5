"""What predict and eval show a user: ground truth drawn beside the prediction, and why baselines were skipped."""

from types import SimpleNamespace

import attrs
import numpy as np
import pytest
from PIL import Image

from qvl_grasp.geometry import Grasp
from qvl_grasp.pictures import PREDICTION_COLORS, TRUTH_COLORS, draw_on_image
from qvl_grasp.report import baselines_skipped_reason, write_grasps

BACKGROUND = (150, 130, 110)
TRUTH = Grasp(cx=100, cy=100, theta=0, w=80, h=40)  # corners (60, 80), (140, 80), (140, 120), (60, 120)
PREDICTION = Grasp(cx=450, cy=150, theta=0, w=80, h=40)  # opening edges at y = 130 and y = 170


def colour_count(image, colour):
    return int((np.asarray(image) == colour).all(axis=-1).sum())


def test_predict_on_an_annotated_image_draws_its_ground_truth_and_a_legend(tmp_path):
    config = SimpleNamespace(predict=SimpleNamespace(save_vis=True), task=SimpleNamespace(ensemble=SimpleNamespace(
        predict=1)))
    dataset = [{"id": "01/pcd0100r.png", "image": Image.new("RGB", (640, 480), BACKGROUND), "grasps": [TRUTH]},
               {"id": "desk.png", "image": Image.new("RGB", (640, 480), BACKGROUND), "grasps": None}]
    predictions = [{"id": sample["id"], "grasp": attrs.asdict(PREDICTION), "corners": PREDICTION.corners(),
                    "valid": True} for sample in dataset]
    written = write_grasps(config, predictions, dataset, tmp_path)
    assert written["pictures"] == 2

    annotated = Image.open(tmp_path / "vis" / "01__pcd0100r.png").convert("RGB")
    assert annotated.getpixel((100, 80)) == TRUTH_COLORS[0]  # the truth's opening edge
    assert annotated.getpixel((140, 100)) == TRUTH_COLORS[1]  # its jaw plate
    assert annotated.getpixel((450, 130)) == PREDICTION_COLORS[0]
    legend = annotated.crop((0, 400, 200, 480))  # bottom-left corner, far from both rectangles
    assert colour_count(legend, (0, 0, 0)) > 1000  # its box
    assert colour_count(legend, TRUTH_COLORS[0]) > 20 and colour_count(legend, PREDICTION_COLORS[0]) > 20

    plain = Image.open(tmp_path / "vis" / "desk.png").convert("RGB")
    assert colour_count(plain, TRUTH_COLORS[0]) == 0 and colour_count(plain, (0, 0, 0)) == 0  # no truth, no legend
    assert plain.getpixel((450, 130)) == PREDICTION_COLORS[0]


def test_an_image_too_small_for_the_legend_gets_the_rectangles_only():
    small = draw_on_image(Image.new("RGB", (64, 48), BACKGROUND), None, [Grasp(cx=32, cy=20, theta=0, w=20, h=10)])
    assert colour_count(small, (0, 0, 0)) == 0 and colour_count(small, TRUTH_COLORS[0]) > 0


def test_an_instruction_is_written_on_a_dark_band_at_the_top(tmp_path):
    config = SimpleNamespace(predict=SimpleNamespace(save_vis=True), task=SimpleNamespace(ensemble=SimpleNamespace(
        predict=1)))
    dataset = [{"id": "scene.png", "image": Image.new("RGB", (640, 480), BACKGROUND), "grasps": None,
                "instruction": "Grasp the red mug."}]
    predictions = [{"id": "scene.png", "instruction": "Grasp the red mug.", "grasp": attrs.asdict(PREDICTION),
                    "corners": PREDICTION.corners(), "valid": True}]
    write_grasps(config, predictions, dataset, tmp_path)
    drawn = np.asarray(Image.open(tmp_path / "vis" / "scene.png").convert("RGB"))
    band = drawn[:12]
    assert (band == 0).all(axis=-1).mean() > 0.5  # mostly dark
    assert (band.min(axis=-1) > 200).any()  # white letters on it
    assert (drawn[60:70] == BACKGROUND).all()  # the band stops under the text
    assert colour_count(draw_on_image(Image.new("RGB", (640, 480), BACKGROUND), None), (0, 0, 0)) == 0


def test_the_baselines_note_names_the_data_format_and_its_missing_mask_files(tmp_path):
    samples = [{"id": "seq/a.png", "mask_path": tmp_path / "a.png"}, {"id": "seq/b.png", "mask_path": None}]
    assert baselines_skipped_reason("ocid", samples) == (
        "1 of 2 ocid images have no object mask file (<seq>/seg_mask_labeled_combi/<image>), e.g. seq/b.png; "
        "the baselines need one for every image")
    assert baselines_skipped_reason("jacquard", samples).startswith("1 of 2 jacquard images have no object mask "
                                                                    "file (<prefix>_mask.png)")
    assert baselines_skipped_reason("cornell", samples) == ("the cornell format has no object masks, and the "
                                                            "baselines need them")


def test_eval_without_masks_prints_why_the_baselines_were_skipped_once(tmp_path, qvl_host, capsys, monkeypatch):
    from qvl.config import load_config

    from qvl_grasp import report
    from qvl_grasp.readers import read_split
    from qvl_grasp.report import evaluate_predictions

    monkeypatch.setattr(report, "_ANNOUNCED", set())
    root = tmp_path / "ocid"
    for name in ("a.png", "b.png"):
        (root / "seq" / "rgb").mkdir(parents=True, exist_ok=True)
        (root / "seq" / "Annotations").mkdir(exist_ok=True)
        Image.new("RGB", (64, 48)).save(root / "seq" / "rgb" / name)
        (root / "seq" / "Annotations" / (name[0] + ".txt")).write_text("10 20\n50 20\n50 40\n10 40\n")
    (root / "seq" / "seg_mask_labeled_combi").mkdir()
    Image.new("L", (64, 48)).save(root / "seq" / "seg_mask_labeled_combi" / "a.png")
    (root / "data_split").mkdir()
    (root / "data_split" / "validation_0.txt").write_text("seq,a.png\nseq,b.png\n")
    config = load_config(qvl_host.task("grasp"), [], [f"task.data_dir={str(root)!r}", "task.eval_pictures=0"])
    val = read_split("ocid", root, "val", config.task.split_files)
    predictions = [{"id": sample["id"], "grasp": attrs.asdict(sample["grasps"][0])} for sample in val]
    metrics = evaluate_predictions(config, predictions, val, tmp_path)
    assert metrics.model["success_rate"] == pytest.approx(1.0)
    assert metrics.baselines == {"skipped": baselines_skipped_reason("ocid", list(val))}
    assert ("qvl-grasp: baselines skipped: 1 of 2 ocid images have no object mask file "
            "(<seq>/seg_mask_labeled_combi/<image>), e.g. seq/b.png;") in capsys.readouterr().err
    again = evaluate_predictions(config, predictions, val, tmp_path)  # as at a training's next validation
    assert again.baselines == metrics.baselines and "baselines skipped" not in capsys.readouterr().err


def test_predict_inputs_carry_the_ground_truth_found_beside_them(tmp_path, qvl_host):
    from qvl.config import load_config

    folder = tmp_path / "01"
    folder.mkdir()
    for name in ("pcd0100r.png", "desk.png"):
        Image.new("RGB", (64, 48)).save(folder / name)
    (folder / "pcd0100cpos.txt").write_text("10 20\n50 20\n50 40\n10 40\n")
    task = qvl_host.task("grasp")
    config = load_config(task, [], [f"predict.input={str(folder)!r}"])
    samples = {s["id"]: s for s in qvl_host.call("build_dataset", task=task, config=config, split="predict")}
    (truth,) = samples["pcd0100r.png"]["grasps"]
    assert (truth.cx, truth.cy, truth.w, truth.h) == pytest.approx((30, 30, 40, 20))
    assert samples["desk.png"]["grasps"] is None
