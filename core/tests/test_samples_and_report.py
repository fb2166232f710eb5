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
