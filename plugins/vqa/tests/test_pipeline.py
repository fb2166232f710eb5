"""make-data, generate, stats, train, eval and predict end to end through qvl's runner (qvl.testing)."""

import json

import pytest

import qvl

pytestmark = pytest.mark.slow

TINY = ("task.synthetic.tasks=2", "task.synthetic.trajectories_per_task=12", "task.test_fraction=0.3",
        "train.eval_samples=8", "task.synthetic.min_frames=8",
        "task.synthetic.max_frames=12", "task.num_samples=160", "task.max_frames=4", "task.bootstrap=200",
        "task.sample_type_ratio=[0.5, 0.3, 0.2]")


@pytest.fixture
def tiny(tmp_path):
    return (f"task.data_dir={str(tmp_path / 'store')!r}", f"task.output_path={str(tmp_path / 'vqa')!r}", *TINY)


def test_train_builds_its_data_then_eval_and_predict_score_every_question(qvl_run_stage, qvl_quick_run, tmp_path,
                                                                         monkeypatch):
    # a new user's first command, with no data anywhere: train writes the store and generates the
    # rows itself, into qvl's cache
    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    tiny = TINY
    assert qvl_run_stage("vqa", "train", *qvl_quick_run, *tiny).steps == 2
    datasets = tmp_path / "cache" / "datasets"
    assert len(list(datasets.glob("vqa-synthetic-*/trajectories.jsonl"))) == 1
    (generated,) = datasets.glob("vqa-160-*/generation_config.json")
    assert json.loads(generated.read_text())["num_samples"] == 160

    evaluated = qvl_run_stage("vqa", "eval", *tiny, "eval.batch_size=8", "eval.max_samples=1000",
                              "task.progress_answer='greedy'", save_vis=True)
    metrics = evaluated.metrics
    predictions = [json.loads(line) for line in (evaluated.out_dir / "predictions.jsonl").read_text().splitlines()]
    kinds = metrics["sample_types"]
    # every paired question is asked in both orders, progress once
    assert kinds["preference"] and kinds["progress"]
    assert metrics["asked"] == len(predictions) == \
        2 * (kinds["preference"] + kinds.get("similarity", 0)) + kinds["progress"]
    assert metrics["invalid_answers"] == 0  # constrained decoding
    assert all(p["text"] in ("1", "2") for p in predictions if p["sample_type"] != "progress")
    assert all(0 <= int(p["text"]) <= 100 for p in predictions if p["sample_type"] == "progress")
    preference = metrics["preference"]
    first_order = [p for p in predictions if p["sample_type"] == "preference" and not p["swapped"]]
    assert preference["count"] == len(first_order)
    assert preference["accuracy"] == pytest.approx(sum(p["value"] == int(p["truth"]) for p in first_order)
                                                   / len(first_order), abs=1e-4)
    low, high = preference["accuracy_ci95"]
    assert low <= preference["accuracy"] <= high
    progress = [p for p in predictions if p["sample_type"] == "progress"]
    assert metrics["progress"]["mae"] == pytest.approx(
        sum(abs(p["value"] - int(p["truth"])) for p in progress) / len(progress), abs=1e-3)
    # the baselines answer the same questions
    baselines = metrics["baselines"]
    assert set(baselines) == {"always_1", "random", "constant_progress", "frame_position"}
    assert baselines["always_1"]["preference"]["debiased_accuracy"] == 0.5  # right in exactly one order
    assert baselines["always_1"]["preference"]["answers_1_rate"] == 1.0
    assert "progress" in baselines["constant_progress"] and "preference" not in baselines["constant_progress"]
    assert set(metrics["by_strategy"]) <= {"rewind", "suboptimal", "different_task", "reverse", "forward_progress",
                                           "prefix"}
    assert "model" in metrics["report"] and "frame_position" in metrics["report"]
    assert (evaluated.out_dir / "progress_curves.png").stat().st_size > 5000
    assert (evaluated.out_dir / "confusion.png").stat().st_size > 5000

    # progress from the model's distribution: every answer valid, the greedy ones kept and equal to
    # what generation wrote above (on the first questions: each batch re-runs the prompt 9 times)
    median = qvl_run_stage("vqa", "eval", *tiny, "eval.batch_size=8", "eval.max_samples=16",
                           "task.progress_answer='median'")
    answered = [json.loads(line) for line in (median.out_dir / "predictions.jsonl").read_text().splitlines()]
    generated = {(p["sample_index"], p["swapped"]): p for p in predictions}
    assert median.metrics["invalid_answers"] == 0 and any(p["sample_type"] == "progress" for p in answered)
    assert all(p["greedy_value"] == generated[(p["sample_index"], p["swapped"])]["value"] for p in answered)
    assert all(p["value"] == p["median_value"] and 0 <= p["mean_value"] <= 100
               for p in answered if p["sample_type"] == "progress")
    assert median.metrics["progress_answer"] == "median" and "model, greedy answers" in median.metrics["report"]
    asked = [generated[(p["sample_index"], p["swapped"])] for p in answered if p["sample_type"] == "progress"]
    assert median.metrics["greedy_answers"]["progress"]["mae"] == pytest.approx(
        sum(abs(p["value"] - int(p["truth"])) for p in asked) / len(asked), abs=1e-3)

    predicted = qvl_run_stage("vqa", "predict", *tiny, "predict.max_samples=6")
    lines = (predicted.out_dir / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 6 and all(json.loads(line)["valid"] for line in lines)

    # --input: a data set generated before, read from the store its generation_config.json names
    (generated_dir,) = datasets.glob("vqa-160-*")
    again = qvl_run_stage("vqa", "predict", *tiny, "predict.max_samples=6", "predict.split=val",
                          predict_input=str(generated_dir))
    assert len((again.out_dir / "predictions.jsonl").read_text().splitlines()) == 6
    with pytest.raises(qvl.UserError, match="not a data set 'qvl run vqa generate' wrote"):
        qvl_run_stage("vqa", "predict", *tiny, predict_input=str(tmp_path))


def test_the_lerobot_copy_trains_like_the_npz_store(qvl_run_stage, qvl_quick_run, tiny, tmp_path):
    qvl_run_stage("vqa", "make-data", *tiny)
    lerobot = (f"task.data_dir={str(tmp_path / 'store' / 'lerobot')!r}",
               f"task.output_path={str(tmp_path / 'vqa-lerobot')!r}")
    assert qvl_run_stage("vqa", "train", *qvl_quick_run, *tiny, *lerobot).steps == 2
    config = json.loads((tmp_path / "vqa-lerobot" / "generation_config.json").read_text())
    assert config["store_root"] == str(tmp_path / "store" / "lerobot")
    stats = qvl_run_stage("vqa", "stats", *tiny, *lerobot)
    assert stats["total"] == sum(stats["by_split"].values()) == 160
    assert stats["by_data_source"] == {"lerobot": 160}  # the LeRobot data set's folder name
    assert (tmp_path / "vqa-lerobot" / "stats" / "stats.png").is_file()
