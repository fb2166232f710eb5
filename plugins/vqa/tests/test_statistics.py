"""``qvl run vqa stats``: the counts equal the rows, and the files are written."""

import json
from collections import Counter

import datasets
import pytest

import qvl
from qvl.data import SPLITS
from qvl_vqa.config import VqaConfig
from qvl_vqa.generation import generate
from qvl_vqa.statistics import dataset_statistics
from qvl_vqa.trajectory import Trajectory


def trajectories():
    qualities = ("successful", "successful", "suboptimal", "failure")
    return [Trajectory(id=f"t{task}-{k}", task=f"task {task}", data_source=f"source {k % 2}",
                       quality_label=qualities[k % 4], partial_success=None, num_frames=5 + k,
                       frames_shape=(5 + k, 8, 8, 3), npz_path=f"t{task}-{k}.npz")
            for task in range(3) for k in range(16)]


def test_counts_equal_the_rows_and_the_files_are_written(tmp_path, capsys):
    task = VqaConfig(num_samples=400, sample_type_ratio=[0.5, 0.3, 0.2], val_fraction=0.25, test_fraction=0.25,
                     save_batch_size=150)
    generate(trajectories(), task, 1, tmp_path / "data", store_root="/store", store_fingerprint={}, progress=False)
    stats = dataset_statistics(tmp_path / "data", tmp_path / "stats")

    data = datasets.load_from_disk(str(tmp_path / "data"))
    rows = [row for split in SPLITS for row in data[split]]
    assert stats["total"] == len(rows) == 400
    assert stats["by_split"] == {split: len(data[split]) for split in SPLITS}
    for split in SPLITS:
        assert stats["by_split_and_type"][split] == dict(Counter(row["sample_type"] for row in data[split]))
    assert sum(n for by in stats["by_type_and_strategy"].values() for n in by.values()) == 400
    assert stats["by_type_and_strategy"]["preference"] == dict(
        Counter(row["data_gen_strategy"] for row in rows if row["sample_type"] == "preference"))
    assert stats["by_data_source"] == dict(Counter(row["data_source"] for row in rows))
    assert sum(sum(by.values()) for by in stats["by_task_and_type"].values()) == 400
    assert stats["preference_answers"] == {
        a: sum(1 for row in rows if row["sample_type"] == "preference" and row["answer"] == a) for a in ("1", "2")}
    progress = [int(row["answer"]) for row in rows if row["sample_type"] == "progress"]
    assert sum(stats["progress_histogram"]) == len(progress) and len(stats["progress_histogram"]) == 101
    assert stats["progress_mean"] == pytest.approx(sum(progress) / len(progress))

    assert json.loads((tmp_path / "stats" / "stats.json").read_text()) == stats
    assert (tmp_path / "stats" / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "samples per split and type" in table and "progress answers" in table


def test_a_folder_that_is_not_a_vqa_data_set_is_a_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(qvl.UserError, match="not a generated VQA data set"):
        dataset_statistics(tmp_path / "empty", tmp_path / "stats")
