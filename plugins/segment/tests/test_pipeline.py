"""make-data, train, eval and predict end to end through qvl's runner (qvl.testing)."""

import json

import numpy as np
import pytest

import qvl
from qvl_segment.episodes import read_episodes
from qvl_segment.metrics import average_precision

pytestmark = pytest.mark.slow

TINY = ("task.synthetic.episodes=16", "task.synthetic.max_frames=24", "task.num_frames=6", "task.test_fraction=0.3",
        "task.val_fraction=0.2", "train.eval_samples=4", "task.max_new_tokens=160")


def test_train_builds_its_data_then_eval_and_predict(qvl_run_stage, qvl_quick_run, tmp_path, monkeypatch):
    # a new user's first command, with no data anywhere: train writes the episodes into qvl's cache
    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    assert qvl_run_stage("segment", "train", *qvl_quick_run, *TINY).steps == 2
    (episodes_file,) = (tmp_path / "cache" / "datasets").glob("segment-synthetic-*/episodes.jsonl")
    episodes = read_episodes(episodes_file)
    assert len(episodes) == 16

    evaluated = qvl_run_stage("segment", "eval", *TINY, save_vis=True)
    metrics = evaluated.metrics
    predictions = [json.loads(line) for line in (evaluated.out_dir / "predictions.jsonl").read_text().splitlines()]
    assert metrics["episodes"] == len(predictions) > 0
    assert metrics["json_valid"] == 1.0  # constrained decoding
    by_id = {e.episode_id: e for e in episodes}
    tested = [by_id[p["episode_id"]] for p in predictions]
    for prediction, episode in zip(predictions, tested):
        assert len(prediction["segments"]) == prediction["k"]
        assert all(0 <= s["start_frame"] <= s["end_frame"] < episode.num_frames for s in prediction["segments"])
    # the reported number is the metric of these predictions
    boxes = [[(s["start_frame"], s["end_frame"], s["score"]) for s in p["segments"]] for p in predictions]
    truths = [[(s.start_frame, s.end_frame) for s in e.segments] for e in tested]
    assert metrics["mAP@0.5"] == pytest.approx(average_precision(boxes, truths, 0.5), nan_ok=True)
    assert set(metrics["baselines"]) == {"uniform_true_k", "uniform_common_k", "frame_difference"}
    assert metrics["baselines"]["uniform_true_k"]["k_accuracy"] == 1.0  # the oracle knows K
    assert "| mAP@0.5 |" in metrics["report"]
    assert len(list((evaluated.out_dir / "timelines").glob("*.png"))) == len(predictions)

    # predict on a folder of frames (one episode, in name order) and on a video
    frames = tmp_path / "frames"
    frames.mkdir()
    for path in tested[0].frames_paths[:10]:
        (frames / path.name).write_bytes(path.read_bytes())
    predicted = qvl_run_stage("segment", "predict", *TINY, predict_input=str(frames), save_vis=True)
    (row,) = [json.loads(line) for line in (predicted.out_dir / "predictions.jsonl").read_text().splitlines()]
    assert row["episode_id"] == "frames"
    assert all(0 <= s["start_frame"] <= s["end_frame"] < 10 for s in row["segments"])
    assert (predicted.out_dir / "timelines" / "frames.png").is_file()

    from PIL import Image

    from qvl.lerobot.video import encode_video

    video = tmp_path / "clip.mp4"
    encode_video(video, [np.asarray(Image.open(p).convert("RGB")) for p in tested[0].frames_paths[:12]], fps=10)
    predicted = qvl_run_stage("segment", "predict", *TINY, predict_input=str(video), run_dir=None)
    (row,) = [json.loads(line) for line in (predicted.out_dir / "predictions.jsonl").read_text().splitlines()]
    assert row["episode_id"] == "clip" and len(row["frame_numbers"]) == 6
    assert all(0 <= s["start_frame"] <= s["end_frame"] < 12 for s in row["segments"])


def test_more_segments_than_k_max_is_a_clear_error(qvl_run_stage, tmp_path, qvl_quick_run):
    data = tmp_path / "data"
    qvl_run_stage("segment", "make-data", f"task.data_dir={str(data)!r}", *TINY)
    with pytest.raises(qvl.UserError, match=r"episodes.jsonl, line \d+, field 'action_config': \d segments, more "
                                            r"than task.k_max = 1"):
        qvl_run_stage("segment", "train", *qvl_quick_run, f"task.data_dir={str(data)!r}", *TINY, "task.k_max=1")


@pytest.mark.parametrize("mode", ["heatmap", "lm"])
def test_the_ablation_modes_train_and_evaluate(qvl_run_stage, qvl_quick_run, tmp_path, mode):
    data = (f"task.data_dir={str(tmp_path / 'data')!r}", *TINY, f"task.mode={mode!r}")
    qvl_run_stage("segment", "make-data", *data)
    qvl_run_stage("segment", "train", *qvl_quick_run, *data)
    metrics = qvl_run_stage("segment", "eval", *data).metrics
    assert metrics["mode"] == mode
    if mode == "heatmap":
        assert "json_valid" not in metrics
    else:
        assert metrics["json_valid"] == 1.0
