"""qvl.samples (what build_dataset returns, and the info evaluate gets) and qvl.report (EvalResult)."""

import json

import pytest

from qvl.report import EvalResult, accuracy, majority_class
from qvl.runner.assembly import FirstSamples, checked_dataset
from qvl.samples import Samples, info_of


def test_samples_index_slice_iterate_and_keep_info_in_their_first_items():
    samples = Samples([{"id": i} for i in range(5)], info={"labels": [0, 1]})
    first = samples.first(3)
    assert len(first) == 3 and first.info is samples.info
    assert [s["id"] for s in first] == [0, 1, 2] and first[-1] == {"id": 2} and first[1:] == [{"id": 1}, {"id": 2}]
    with pytest.raises(IndexError):
        first[3]
    assert not hasattr(first, "labels")  # no attribute forwarding: info is passed explicitly
    assert info_of(first) == {"labels": [0, 1]} and info_of([{"id": 0}]) is None


def test_validation_limit_keeps_samples_info_and_wraps_legacy_data_sets_as_before():
    def call(name, **kwargs):
        return data

    data = Samples(list(range(10)), info="whole split")
    limited = checked_dataset(call, task=type("T", (), {"name": "t"})(), config=None, split="val", limit=4)
    assert isinstance(limited, Samples) and len(limited) == 4 and limited.info == "whole split"

    class Legacy(list):  # API 3: evaluate read attributes off the data set
        episodes = ["e0", "e1"]

    data = Legacy(range(10))
    limited = checked_dataset(call, task=type("T", (), {"name": "t"})(), config=None, split="val", limit=4)
    assert isinstance(limited, FirstSamples) and limited.episodes == ["e0", "e1"] and info_of(limited) is None


def test_hook_evaluate_receives_the_whole_splits_info_during_validation(qvl_run_stage, qvl_quick_run, qvl_host,
                                                                       tmp_path):
    from qvl import hookimpl

    seen = []

    @hookimpl(wrapper=True)
    def evaluate(dataset, info):
        seen.append((len(dataset), info))
        return (yield)

    plugin = type("Spy", (), {"evaluate": staticmethod(evaluate)})()
    qvl_host.pm.register(plugin, name="spy")
    try:
        qvl_run_stage("colors", "train", *qvl_quick_run, "task.train_samples=6", "task.val_samples=5",
                      "train.eval_every=2", "train.eval_samples=3")
    finally:
        qvl_host.pm.unregister(name="spy")
    assert seen and all(n == 3 for n, _ in seen)
    assert seen[0][1].majority == "red"  # colors' info: the training split's majority colour


def test_eval_result_table_json_and_files(tmp_path):
    result = EvalResult(model={"accuracy": 0.8, "f1": 0.5, "note": "text"},
                        baselines={"majority": {"accuracy": 0.3, "f1": 0.1}, "skipped": "no masks"},
                        intervals={"model": {"accuracy": (0.7, 0.9)}}, extra={"classes": 3},
                        titles={"majority": "majority class"})
    table = result.table()
    assert table.splitlines() == ["| method | accuracy | f1 |", "|---|---|---|",
                                  "| model | 0.800 [0.700, 0.900] | 0.500 |", "| majority class | 0.300 | 0.100 |"]
    data = result.to_dict()
    assert data == {"model": {"accuracy": 0.8, "f1": 0.5, "note": "text"},
                    "baselines": {"majority": {"accuracy": 0.3, "f1": 0.1}, "skipped": "no masks"},
                    "intervals": {"model": {"accuracy": [0.7, 0.9]}}, "classes": 3}
    json.dumps(data)
    result.write(tmp_path)
    assert (tmp_path / "comparison.md").read_text() == table
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_majority_class_and_accuracy():
    assert majority_class(["b", "a", "a", "b", "c"]) == "b"  # equal counts: the first seen
    assert accuracy(["a", "b"], ["a", "c"]) == 0.5 and accuracy([], []) == 0.0
    with pytest.raises(ValueError, match="no training labels"):
        majority_class([])


def test_eval_result_in_a_tasks_own_schema_metrics_at_the_top_nested_columns_variants(tmp_path):
    model = {"mse": 0.25, "progress": {"mae": 12.5, "mae_ci95": [10.0, 15.0]}}
    result = EvalResult(model=model, baselines={"mean": {"mse": 0.5, "progress": {"mae": 20.0}},
                                                "sizes": {"opening_px": 30.0}},  # no column: not a row
                        variants={"greedy_answers": {"progress": {"mae": 14.0}}},
                        intervals={"model": {"progress/mae": (10.0, 15.0)}}, intervals_in_json=False,
                        paired_differences={"progress/mae": {"mean": -7.5}}, extra={"samples": 8},
                        columns=[("mse", "MSE"), ("progress/mae", "progress MAE")],
                        titles={"greedy_answers": "model, greedy answers"}, model_key=None)
    assert result.table().splitlines()[2:] == ["| model | 0.250 | 12.500 [10.000, 15.000] |",
                                               "| model, greedy answers | - | 14.000 |",
                                               "| mean | 0.500 | 20.000 |"]
    assert result.to_dict() == {**model, "greedy_answers": {"progress": {"mae": 14.0}},
                                "baselines": result.baselines, "paired_differences": {"progress/mae": {"mean": -7.5}},
                                "samples": 8}
    assert EvalResult(model={"a": 1.0}, model_key="scores").to_dict() == {"scores": {"a": 1.0}, "baselines": {}}
    assert EvalResult(model={}, paired_differences={}).to_dict() == {"model": {}, "baselines": {}, "paired_differences": {}}
    result.write(tmp_path)
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_comparison_chart_wraps_many_metrics_into_rows(tmp_path):
    from qvl.report import comparison_chart, pyplot

    columns = [(f"m{k}", f"metric {k}") for k in range(13)]
    comparison_chart({"model": {f"m{k}": k / 13 for k in range(13)}, "base": {"m0": 0.5}}, columns,
                     tmp_path / "chart.png")
    from PIL import Image

    width, height = Image.open(tmp_path / "chart.png").size
    assert height > width / 3  # three rows of five, not one strip of thirteen
    assert pyplot() is pyplot()


def test_confusion_chart_one_matrix_and_panels_through_confusion_axes(tmp_path):
    from PIL import Image

    from qvl.report import confusion_axes, confusion_chart, pyplot

    out = confusion_chart([[3, 1, 0], [0, 2, 1], [0, 0, 4]], tmp_path / "confusion.png", "3 classes",
                          xlabel="predicted bin", ylabel="true bin")
    assert out == tmp_path / "confusion.png" and Image.open(out).size[0] > 200
    plt = pyplot()
    figure, axes = plt.subplots(1, 2)
    confusion_axes(axes[0], [[1, 0], [2, 3]], "pairs", labels=["1", "2"])
    confusion_axes(axes[1], [[0] * 20 for _ in range(20)], "empty, large")  # all zeros, no counts written
    assert [t.get_text() for t in axes[0].texts] == ["1", "0", "2", "3"] and not axes[1].texts
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["1", "2"]
    assert axes[0].get_xlabel() == "predicted" and axes[0].get_ylabel() == "true"
    plt.close(figure)
