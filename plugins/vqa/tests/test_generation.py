"""Static VQA generation: determinism across workers, resume, splits, schema, ratios, answers."""

import json
import os
import random
from collections import Counter

import attrs
import datasets
import pyarrow as pa
import pytest

import qvl
from qvl.build import PARTIAL_TAG
from qvl.data import SPLITS
from qvl_vqa import shard_writer
from qvl_vqa.config import STRATEGIES, VqaConfig
from qvl_vqa.generation import build_vqa_dataset, generate
from qvl_vqa.generation_plan import GenerationPlan
from qvl_vqa.row_schema import ROW_SCHEMA, row_features
from qvl_vqa.sample_builders import make_sample
from qvl_vqa.trajectory import Trajectory
from qvl_vqa.trajectory_splits import split_trajectories

STORE = {"store_root": "/data/store", "store_fingerprint": {"files": "abc"}}


def fake_trajectories(per_task=16, tasks=4, seed=0, qualities=("successful", "successful", "suboptimal", "failure")):
    """Records only (no frames): 2..40 frames, every task half successful, half suboptimal or failed."""
    rng = random.Random(seed)
    out = []
    for task in range(tasks):
        for k in range(per_task):
            quality = qualities[k % len(qualities)]
            frames = rng.randint(2, 40)
            out.append(Trajectory(
                id=f"t{task}-{k:03d}", task=f"task {task}", data_source=f"source {task % 2}", quality_label=quality,
                partial_success=round(rng.uniform(0.1, 0.9), 3) if quality == "suboptimal" else None,
                num_frames=frames, frames_shape=(frames, 32, 32, 3), npz_path=f"npz/t{task}-{k:03d}.npz"))
    rng.shuffle(out)  # the store's order must not matter
    return out


def rows_of(folder):
    data = datasets.load_from_disk(str(folder))
    return {split: data[split].to_list() for split in SPLITS}


def sampled(trajectories, task, seed):
    plan = GenerationPlan.of(trajectories, task, seed)
    return [make_sample(i, plan) for i in range(task.num_samples)]


def videos(row):
    """(prefix, trajectory id) of every video a row shows."""
    return [(p, row[f"{p}trajectory_id"]) for p in ("", "first_", "second_") if row[f"{p}trajectory_id"] is not None]


def test_same_rows_whatever_the_number_of_workers(tmp_path):
    trajectories = fake_trajectories()
    task = VqaConfig(num_samples=600, sample_type_ratio=[0.5, 0.3, 0.2], save_batch_size=70)
    one = generate(trajectories, task, 3, tmp_path / "one", progress=False, **STORE)
    two = generate(trajectories, attrs.evolve(task, num_workers=2), 3, tmp_path / "two", progress=False, **STORE)
    assert one["counts"] == two["counts"]
    assert rows_of(tmp_path / "one") == rows_of(tmp_path / "two")
    # and the rows are those make_sample gives, in order, with the split given by the index alone
    rows = [row for split in SPLITS for row in rows_of(tmp_path / "one")[split]]
    assert rows == sampled(trajectories, task, 3)
    assert [row["sample_index"] for row in rows] == list(range(600))
    other = sampled(trajectories, task, 4)
    assert rows != other


def test_an_interrupted_generation_resumes_from_its_finished_shards(tmp_path, monkeypatch):
    trajectories = fake_trajectories()
    task = VqaConfig(num_samples=500, sample_type_ratio=[0.4, 0.4, 0.2], save_batch_size=60)
    whole = build_vqa_dataset(tmp_path / "whole", trajectories, task, 5, progress=False, **STORE)

    real_write = shard_writer._write_shard
    written = []

    def write_then_die(job, shard):
        if len(written) == 3:
            raise KeyboardInterrupt  # as a killed run
        written.append(real_write(job, shard))
        return written[-1]

    monkeypatch.setattr(shard_writer, "_write_shard", write_then_die)
    target = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        build_vqa_dataset(target, trajectories, task, 5, progress=False, **STORE)
    assert not target.exists()
    (partial,) = tmp_path.glob(f".resumed{PARTIAL_TAG}*")  # build_directory kept the unfinished build
    finished = {(r["split"], r["file"]): os.stat(partial / r["split"] / r["file"]) for r in written}
    assert len(finished) == 3

    monkeypatch.setattr(shard_writer, "_write_shard", real_write)
    build_vqa_dataset(target, trajectories, task, 5, progress=False, **STORE)
    for (split, name), before in finished.items():
        after = os.stat(target / split / name)
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    config = json.loads((target / "generation_config.json").read_text())
    assert config["shards_reused"] == 3
    assert rows_of(target) == rows_of(whole)
    assert not list(tmp_path.glob(f".resumed{PARTIAL_TAG}*")) and not (target / shard_writer.SHARD_RECORDS).exists()


GENERATION_SETUP = """
from qvl_vqa import generation, shard_writer
from qvl_vqa.config import VqaConfig
from qvl_vqa.trajectory import Trajectory

trajectories = [Trajectory(id=f"t{k % 4}-{k}", task=f"task {k % 4}", data_source="s",
                           quality_label=("successful", "successful", "suboptimal", "failure")[(k // 4) % 4],
                           partial_success=None, num_frames=10 + k % 7, frames_shape=(10 + k % 7, 8, 8, 3),
                           npz_path=f"npz/{k}.npz") for k in range(64)]
task, seed = VqaConfig(num_samples=500, save_batch_size=60), 5
"""
KILLED_AFTER_THREE_SHARDS = GENERATION_SETUP + """
import os, signal, sys
from pathlib import Path

real_write, written = shard_writer._write_shard, []

def write_then_die(job, shard):
    if len(written) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # no handler, no cleanup: as a killed machine
    written.append(real_write(job, shard))
    return written[-1]

if __name__ == "__main__":
    shard_writer._write_shard = write_then_die
    generation.build_vqa_dataset(Path(sys.argv[1]), trajectories, task, seed, store_root="/s",
                                 store_fingerprint={}, progress=False)
"""


def test_a_sigkilled_generation_resumes_from_its_finished_shards(tmp_path):
    import signal
    import subprocess
    import sys

    script = tmp_path / "killed.py"
    script.write_text(KILLED_AFTER_THREE_SHARDS)
    target = tmp_path / "vqa"
    result = subprocess.run([sys.executable, str(script), str(target)], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert not target.exists()
    (partial,) = tmp_path.glob(f".vqa{PARTIAL_TAG}*")
    assert len(list(partial.glob("*/data-*.arrow"))) == 3

    # the same generation again, uninterrupted: it keeps the three shards the killed run left
    setup: dict = {}
    exec(GENERATION_SETUP, setup)
    trajectories, task, seed = setup["trajectories"], setup["task"], setup["seed"]
    build_vqa_dataset(target, trajectories, task, seed, store_root="/s", store_fingerprint={}, progress=False)
    assert json.loads((target / "generation_config.json").read_text())["shards_reused"] == 3
    whole = build_vqa_dataset(tmp_path / "whole", trajectories, task, seed, store_root="/s", store_fingerprint={},
                              progress=False)
    assert rows_of(target) == rows_of(whole)


def test_shards_of_another_shard_size_are_not_mixed_in(tmp_path, monkeypatch):
    trajectories = fake_trajectories()
    task = VqaConfig(num_samples=300, save_batch_size=40)
    expected = rows_of(build_vqa_dataset(tmp_path / "whole", trajectories, task, 6, progress=False, **STORE))
    real_write, calls = shard_writer._write_shard, []

    def die_after_two(job, shard):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(shard)
        return real_write(job, shard)

    monkeypatch.setattr(shard_writer, "_write_shard", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_vqa_dataset(tmp_path / "out", trajectories, task, 6, progress=False, **STORE)
    monkeypatch.setattr(shard_writer, "_write_shard", real_write)
    # the shard size does not change the rows, so the fingerprint (and the kept build) is the same
    out = build_vqa_dataset(tmp_path / "out", trajectories, attrs.evolve(task, save_batch_size=-1), 6,
                            progress=False, **STORE)
    assert rows_of(out) == expected
    assert sorted(p.name for p in (out / "train").glob("*.arrow")) == ["data-00000-of-00001.arrow"]


def test_splits_hold_disjoint_trajectories(tmp_path):
    trajectories = fake_trajectories()
    splits = split_trajectories(trajectories, 0.25, 0.25, seed=1)
    ids = [t.id for members in splits.values() for t in members]
    assert sorted(ids) == sorted(t.id for t in trajectories)
    for name in {t.task for t in trajectories}:
        assert all(any(t.task == name for t in splits[s]) for s in SPLITS)
    assert splits == split_trajectories(list(reversed(trajectories)), 0.25, 0.25, seed=1)  # stable
    assert splits != split_trajectories(trajectories, 0.25, 0.25, seed=2)
    # few trajectories: val and test still get one per task, train keeps one
    few = split_trajectories(fake_trajectories(per_task=3, tasks=2), 0.1, 0.15, seed=1)
    assert [len(few[s]) for s in SPLITS] == [2, 2, 2]

    # similarity in every split needs two successful trajectories of a task there: large held-out fractions
    task = VqaConfig(num_samples=800, sample_type_ratio=[0.4, 0.3, 0.3], val_fraction=0.25, test_fraction=0.25)
    out = build_vqa_dataset(tmp_path / "data", trajectories, task, 2, progress=False, **STORE)
    assigned = json.loads((out / "trajectory_splits.json").read_text())
    used = {split: set() for split in SPLITS}
    for split, rows in rows_of(out).items():
        assert {row["sample_type"] for row in rows} == {"preference", "progress", "similarity"}, split
        for row in rows:
            assert row["split"] == split
            used[split].update(trajectory for _, trajectory in videos(row))
    for split in SPLITS:
        assert used[split] <= set(assigned[split])  # different_task partners and candidates included
    assert not (used["train"] & used["val"]) and not (used["train"] & used["test"]) and not (used["val"] & used["test"])


def test_every_row_has_every_field_with_the_declared_types(tmp_path):
    trajectories = fake_trajectories()
    # one sample per shard: every shard (the first included) holds a single sample type
    task = VqaConfig(num_samples=40, sample_type_ratio=[1, 1, 1], save_batch_size=1)
    out = build_vqa_dataset(tmp_path / "mixed", trajectories, task, 8, progress=False, **STORE)
    data = datasets.load_from_disk(str(out))
    for split in SPLITS:
        assert data[split].features == row_features()
        for path in (out / split).glob("*.arrow"):
            with pa.memory_map(str(path)) as source:
                assert pa.ipc.open_stream(source).schema.equals(ROW_SCHEMA, check_metadata=False)
        for row in data[split]:
            assert list(row) == ROW_SCHEMA.names
    assert {row["sample_type"] for split in SPLITS for row in data[split]} == {"preference", "progress", "similarity"}
    only = build_vqa_dataset(tmp_path / "progress", trajectories,
                             attrs.evolve(task, sample_type_ratio=[0, 1, 0], save_batch_size=-1), 8,
                             progress=False, **STORE)
    data = datasets.load_from_disk(str(only))
    assert data["train"].features == row_features()
    assert data["train"][0]["first_frame_indices"] is None and data["train"][0]["chosen_is_first"] is None


def test_ratios_answers_and_frame_indices():
    trajectories = fake_trajectories()
    by_id = {t.id: t for t in trajectories}
    task = VqaConfig(num_samples=4000, sample_type_ratio=[0.5, 0.3, 0.2], max_frames=6,
                     strategy_ratio={"preference": {"rewind": 3, "reverse": 0}},
                     val_fraction=0.25, test_fraction=0.25)  # similarity possible in every split
    rows = sampled(trajectories, task, 9)
    types = Counter(row["sample_type"] for row in rows)
    for kind, share in zip(("preference", "progress", "similarity"), task.sample_type_ratio):
        assert abs(types[kind] / len(rows) - share) < 0.04, types
    preference = Counter(row["data_gen_strategy"] for row in rows if row["sample_type"] == "preference")
    assert preference["reverse"] == 0
    assert abs(preference["rewind"] / types["preference"] - 0.6) < 0.05, preference
    progress = Counter(row["data_gen_strategy"] for row in rows if row["sample_type"] == "progress")
    assert set(progress) == set(STRATEGIES["progress"])
    assert Counter(row["answer"] for row in rows if row["sample_type"] != "progress")["1"] / (
        types["preference"] + types["similarity"]) == pytest.approx(0.5, abs=0.04)

    for row in rows:
        for prefix, trajectory_id in videos(row):
            trajectory = by_id[trajectory_id]
            frames = row[f"{prefix}frame_indices"]
            assert 1 <= len(frames) <= task.max_frames
            assert all(0 <= f < trajectory.num_frames for f in frames)
            assert row[f"{prefix}frames_shape"] == list(trajectory.frames_shape)
            assert row[f"{prefix}npz_path"] == trajectory.npz_path
            shows_task = trajectory.task == row["task"]
            assert row[f"{prefix}target_progress"] == (
                [trajectory.progress(f) for f in frames] if shows_task else [0.0] * len(frames))
            if row["data_gen_strategy"] == "forward_progress" or prefix == "first_" and row["chosen_is_first"]:
                assert len(frames) == min(task.max_frames, trajectory.num_frames)
        assert row["task"] in row["prompt"] and row["answer"] not in (None, "")
        if row["sample_type"] == "progress":
            assert row["answer"] == str(round(100 * row["target_progress"][-1]))
            if row["data_gen_strategy"] == "different_task":
                assert row["answer"] == "0" and by_id[row["trajectory_id"]].task != row["task"]
        elif row["sample_type"] == "preference":
            first, second = row["first_target_progress"][-1], row["second_target_progress"][-1]
            assert first != second and row["answer"] == ("1" if first > second else "2")
            assert row["chosen_is_first"] == (row["answer"] == "1")
        else:
            reference = by_id[row["trajectory_id"]]
            match = by_id[row[("first_" if row["answer"] == "1" else "second_") + "trajectory_id"]]
            odd = by_id[row[("second_" if row["answer"] == "1" else "first_") + "trajectory_id"]]
            assert reference.quality_label == match.quality_label == "successful" and reference.id != match.id
            assert match.task == reference.task
            assert odd.task != reference.task if row["data_gen_strategy"] == "different_task" else (
                odd.task == reference.task and odd.quality_label != "successful")


def test_eval_mode_pairs_real_quality_differences():
    trajectories = fake_trajectories()
    by_id = {t.id: t for t in trajectories}
    task = VqaConfig(num_samples=300, sample_type_ratio=[1, 0, 0], eval_mode=True)
    for row in sampled(trajectories, task, 10):
        assert row["data_gen_strategy"] == "suboptimal"
        chosen, rejected = ("first_", "second_") if row["chosen_is_first"] else ("second_", "first_")
        assert by_id[row[f"{chosen}trajectory_id"]].quality_label == "successful"
        rejected_trajectory = by_id[row[f"{rejected}trajectory_id"]]
        assert rejected_trajectory.quality_label != "successful" and rejected_trajectory.task == row["task"]


def test_impossible_settings_fail_clearly_and_dropped_strategies_are_said(capsys):
    only_successful = fake_trajectories(qualities=("successful",))
    with pytest.raises(qvl.UserError, match="no train sample can be made.*suboptimal"):
        GenerationPlan.of(only_successful, VqaConfig(num_samples=10, sample_type_ratio=[1, 0, 0], eval_mode=True), 0)
    plan = GenerationPlan.of(fake_trajectories(tasks=1), VqaConfig(num_samples=50), 0)
    assert any("different_task" in note and "one task" in note for note in plan.notes)
    assert all(make_sample(i, plan)["data_gen_strategy"] != "different_task" for i in range(50))


def test_a_users_folder_is_refused_and_left_untouched(tmp_path):
    folder = tmp_path / "my_data"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(qvl.UserError, match="not written by qvl"):
        build_vqa_dataset(folder, fake_trajectories(), VqaConfig(num_samples=10), 0, progress=False, **STORE)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"] and (folder / "notes.txt").read_text() == "mine"
    assert not list(tmp_path.glob(f".my_data{PARTIAL_TAG}*"))


def test_the_split_is_unchanged_by_qvl_data():
    """Trajectories split as by vqa's own code (shuffled within quality labels, evenly spread test and
    val positions) before the spread moved to qvl.data.split_items (digests computed with that code,
    at commit a2fa36d)."""
    import hashlib
    import json

    expected = {(30, 4, 0.1, 0.15, 0): "429555833259cfd0", (100, 4, 0.1, 0.15, 0): "4e6e743e86fea54a",
                (5, 6, 0.25, 0.25, 1): "05cf53898ed77b2c", (3, 4, 0.1, 0.15, 0): "922481289795d4df"}
    for (per_task, tasks, val, test, seed), digest in expected.items():
        splits = split_trajectories(fake_trajectories(per_task=per_task, tasks=tasks), val, test, seed)
        chosen = {name: [t.id for t in part] for name, part in splits.items()}
        assert hashlib.sha256(json.dumps(chosen).encode()).hexdigest()[:16] == digest, (per_task, tasks, seed)
