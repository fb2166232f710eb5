"""Recordings to the training data set: splits, rows, skipped episodes, the folder rules."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from qvl.build import MARKER, read_marker
from qvl.config import RunConfig
from qvl.errors import UserError

from qvl_vla_flow.actions import VK_CODES, ActionSpace
from qvl_vla_flow.capture import align, read_episode
from qvl_vla_flow.config import VlaFlowConfig
from qvl_vla_flow.convert import (
    COLUMNS,
    SPLITS,
    convert,
    convert_stage,
    data_folder,
    fingerprint,
    load_action_space,
    open_dataset,
    split_episodes,
)

UP, LEFT = VK_CODES["UP"], VK_CODES["LEFT"]


def record_some(capture, count: int = 5) -> list[Path]:
    """``count`` episodes of 3 to 6 frames, one with duplicate frames, each with its own instruction."""
    folders = []
    for e in range(count):
        n = 3 + e % 4
        frame_ms = [100 * i for i in range(n)]
        colours = list(range(n))
        if e == 1:  # frame 1 written twice
            frame_ms.insert(2, 100)
            colours.insert(2, 1)
        events = [capture.key("keydown", 30, UP), capture.key("keyup", 140, UP),
                  capture.event("mousemove", 150, x=4 * e, y=31), capture.key("keydown", 210, LEFT)]
        folders.append(capture.write(f"episode_{e:03d}", frame_ms=frame_ms, colours=colours, events=events,
                                     instruction=f"task {e}"))
    return folders


def test_convert_writes_splits_rows_and_files(capture, tmp_path, capsys):
    folders = record_some(capture, 5)
    (capture.root / "notes").mkdir()  # no meta.json: not an episode
    (capture.root / ".episode_009.writing-1-2").mkdir()  # a recorder's unfinished folder: hidden
    (capture.root / ".episode_009.writing-1-2" / "meta.json").write_text("{}")
    config = VlaFlowConfig()
    out = tmp_path / "data"
    report = convert(capture.root, out, config)

    assert (out / MARKER).is_file() and read_marker(out)["kind"] == "dataset"
    assert json.loads((out / "convert_report.json").read_text()) == report
    assert json.loads((out / "action_space.json").read_text()) == config.action_space.to_dict()
    assert load_action_space(out) == config.action_space
    assert not list(out.glob("_*")) and not [p for p in tmp_path.iterdir() if ".qvl-tmp-" in p.name]

    names = report["episode_names"]
    assert sorted(sum(names.values(), [])) == [f.name for f in folders]  # each episode in exactly one split
    assert all(names[split] for split in SPLITS)  # 5 episodes: none of the splits is empty
    assert report["episodes"] == {split: len(names[split]) for split in SPLITS}
    assert report["skipped"] == [] and report["unknown_keys"] == []
    assert report["duplicates"] == {"found": 1, "dropped": 1, "mode": "drop"}

    dataset, opened_space = open_dataset(out)
    assert opened_space == config.action_space
    assert set(dataset) == set(SPLITS)
    features = dataset["train"].features
    assert list(features) == list(COLUMNS)
    assert {name: getattr(features[name], "dtype", None) for name in
            ("episode", "step", "frame", "timestamp_ms", "instruction", "raw_events", "episode_steps")} == {
        "episode": "string", "step": "int32", "frame": "int32", "timestamp_ms": "float64", "instruction": "string",
        "raw_events": "string", "episode_steps": "int32"}
    assert type(features["image"]).__name__ == "Image"
    assert features["action"].feature.dtype == "float32" and features["action"].length == config.action_space.dim

    space = config.action_space
    for split in SPLITS:
        rows = dataset[split]
        assert set(rows["episode"]) == set(names[split])
        alignments = {name: align(read_episode(capture.root / name), space) for name in names[split]}
        assert len(rows) == sum(len(a) for a in alignments.values()) == report["frames"][split]
        for row in rows:
            aligned = alignments[row["episode"]]
            step = row["step"]
            assert row["frame"] == aligned.frames[step]
            assert row["timestamp_ms"] == aligned.timestamp_ms[step]
            assert row["episode_steps"] == len(aligned)
            assert row["instruction"] == f"task {int(row['episode'][-3:])}"
            np.testing.assert_array_equal(np.asarray(row["action"], np.float32), aligned.actions[step])
            assert json.loads(row["raw_events"]) == aligned.raw_events[step]
            image = np.asarray(row["image"])
            colour = row["frame"] - (1 if row["episode"] == "episode_001" and row["frame"] >= 2 else 0)
            assert image.shape == (32, 32, 3)
            assert np.abs(image.astype(int) - capture.colour(colour)).mean() < 4
    # the duplicate of episode_001 was dropped: its video frames 0, 1, 3, 4
    episode_1 = [row for split in SPLITS for row in dataset[split] if row["episode"] == "episode_001"]
    assert [row["frame"] for row in episode_1] == [0, 1, 3, 4] and [row["step"] for row in episode_1] == [0, 1, 2, 3]
    assert "5 episodes" in capsys.readouterr().out


def test_duplicates_kept(capture, tmp_path):
    record_some(capture, 2)
    report = convert(capture.root, tmp_path / "data", VlaFlowConfig(duplicate_frames="keep"))
    assert report["duplicates"] == {"found": 1, "dropped": 0, "mode": "keep"}
    assert sum(report["frames"].values()) == 3 + 5  # episode_001: 4 frames and its duplicate
    rows = [row for split in SPLITS for row in open_dataset(tmp_path / "data")[0][split].select_columns(
        ["episode", "frame", "step", "action"]) if row["episode"] == "episode_001"]
    assert [row["frame"] for row in rows] == [0, 1, 2, 3, 4] and [row["step"] for row in rows] == [0, 1, 2, 3, 4]
    assert rows[1]["action"] == rows[2]["action"]


def test_a_bad_episode_is_skipped_and_reported(capture, tmp_path, capsys):
    record_some(capture, 4)
    bad = capture.write("episode_bad", events=[capture.key("keydown", 10, UP)])
    (bad / "events.jsonl").write_text('{"ts": 1, "kind": "keydown"}\n')
    report = convert(capture.root, tmp_path / "data", VlaFlowConfig())
    (skipped,) = report["skipped"]
    assert skipped["episode"] == "episode_bad"
    assert f"{bad / 'events.jsonl'}, line 1, field 'vk': missing" in skipped["reason"]
    assert sum(report["episodes"].values()) == 4
    assert all(report["episodes"][split] for split in SPLITS)  # the splits are of the episodes left
    dataset, _ = open_dataset(tmp_path / "data")
    assert "episode_bad" not in {name for split in SPLITS for name in dataset[split]["episode"]}
    assert "skipped episode episode_bad" in capsys.readouterr().err


def test_no_episode_left_is_an_error(capture, tmp_path):
    folder = capture.write("episode_000")
    (folder / "frame_ts.bin").write_bytes(b"\1\2\3")
    with pytest.raises(UserError, match=r"none of the 1 episodes could be converted \(episode_000: .*frame_ts.bin"):
        convert(capture.root, tmp_path / "data", VlaFlowConfig())
    assert not (tmp_path / "data").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no episode folders"):
        convert(tmp_path / "empty", tmp_path / "other", VlaFlowConfig())
    with pytest.raises(UserError, match="no such recordings folder"):
        convert(tmp_path / "nowhere", tmp_path / "other", VlaFlowConfig())


def test_unknown_keys_are_reported_with_a_warning(capture, tmp_path, capsys):
    a = VK_CODES["A"]
    capture.write("episode_000", events=[capture.key("keydown", 10, a), capture.key("keydown", 40, a),
                                         capture.key("keyup", 60, a), capture.key("keydown", 150, 0x70)])
    report = convert(capture.root, tmp_path / "data", VlaFlowConfig())
    assert report["unknown_keys"] == [{"vk": 0x41, "hex": "0x41", "name": "A", "presses": 1},
                                      {"vk": 0x70, "hex": "0x70", "name": None, "presses": 1}]
    err = capsys.readouterr().err
    assert "warning: keys outside the vocabulary" in err and "A (0x41) x1" in err and "? (0x70) x1" in err


def test_a_users_folder_is_never_touched(capture, tmp_path):
    record_some(capture, 2)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    with pytest.raises(UserError, match="not empty and was not written by qvl"):
        convert(capture.root, out, VlaFlowConfig())
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "my notes"
    with pytest.raises(UserError, match="not a converted vla_flow data set"):
        open_dataset(out)
    with pytest.raises(UserError, match="not a converted vla_flow data set"):
        load_action_space(tmp_path / "nowhere")


def test_a_second_convert_reuses_the_folder(capture, tmp_path):
    folders = record_some(capture, 3)
    out = tmp_path / "data"
    first = convert(capture.root, out, VlaFlowConfig())
    created = read_marker(out)["created"]
    assert convert(capture.root, out, VlaFlowConfig()) == first
    assert read_marker(out)["created"] == created  # not rebuilt
    # another setting, or a recording that changed: rebuilt in place
    convert(capture.root, out, VlaFlowConfig(duplicate_frames="keep"))
    assert read_marker(out)["created"] != created
    created = read_marker(out)["created"]
    stat = (folders[0] / "meta.json").stat()
    os.utime(folders[0] / "meta.json", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    convert(capture.root, out, VlaFlowConfig(duplicate_frames="keep"))
    assert read_marker(out)["created"] != created


def test_fingerprint_covers_files_and_settings(capture):
    record_some(capture, 2)
    base = fingerprint(capture.root, VlaFlowConfig())
    assert fingerprint(capture.root, VlaFlowConfig()) == base
    assert {path for path, _, _ in base["files"]} >= {"episode_000/video.mp4", "episode_001/events.jsonl"}
    for changed in (VlaFlowConfig(keys=["UP"]), VlaFlowConfig(val_fraction=0.3), VlaFlowConfig(test_fraction=0.0),
                    VlaFlowConfig(duplicate_frames="keep")):
        assert fingerprint(capture.root, changed) != base
    assert fingerprint(capture.root, VlaFlowConfig(num_layers=8)) == base  # not a conversion setting


@pytest.mark.parametrize("count", range(0, 13))
def test_split_episodes(count):
    names = [f"episode_{i:06d}" for i in range(count)]
    splits = split_episodes(names, 0.1, 0.2)
    assert sorted(sum(splits.values(), [])) == names  # every episode once
    if count:
        assert splits["train"]
    if count >= 3:
        assert splits["val"] and splits["test"]
    assert split_episodes(list(reversed(names)), 0.1, 0.2) == {k: list(reversed(v)) for k, v in splits.items()}
    assert split_episodes(names, 0.0, 0.2)["val"] == []


def test_split_episodes_keeps_splits_when_episodes_are_added():
    names = [f"episode_{i:06d}" for i in range(200)]
    before = split_episodes(names[:100], 0.1, 0.2)
    after = split_episodes(names, 0.1, 0.2)
    for split in SPLITS:
        assert set(before[split]) <= set(after[split])
    assert 10 <= len(after["val"]) <= 35 and 25 <= len(after["test"]) <= 60
    with pytest.raises(UserError, match="sum below 1"):
        split_episodes(names, 0.5, 0.5)


def test_convert_stage_resolves_its_folders(capture, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    record_some(capture, 3)
    config = RunConfig(task=VlaFlowConfig())
    with pytest.raises(UserError, match="qvl run vla_flow record"):
        convert_stage(config, None)
    convert_stage(config, str(capture.root))
    folder = data_folder(config, capture.root)
    assert folder.parent == tmp_path / "cache" / "vla_flow" / "data" and len(folder.name) == 16
    assert open_dataset(folder)[0]["train"].num_rows > 0
    assert data_folder(config.task, capture.root) == folder  # the task config alone does too

    config = RunConfig(task=VlaFlowConfig(recordings_dir=str(capture.root), data_dir=str(tmp_path / "mine")))
    assert data_folder(config, capture.root) == tmp_path / "mine"
    convert_stage(config, None)
    assert load_action_space(tmp_path / "mine") == ActionSpace()


def test_train_reads_what_convert_input_wrote(capture, tmp_path, monkeypatch, capsys):
    """``convert --input DIR`` prints the ``--set`` that trains on it, and ``train`` with that setting
    reads the very folder convert wrote (nothing converted again); with ``task.data_dir``, that folder."""
    from qvl.config import load_config

    from qvl_vla_flow import convert as convert_module
    from qvl_vla_flow import pipeline
    from qvl_vla_flow.plugin import TASK

    monkeypatch.setenv("QVL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(pipeline, "_opened", {})
    write_dataset = convert_module._write_dataset
    record_some(capture, 3)
    hint = convert_stage(load_config(TASK), str(capture.root))
    assert hint == f"--set task.recordings_dir={capture.root.absolute()}"
    assert f"train on it with: qvl run vla_flow train {hint}" in capsys.readouterr().out
    (written,) = [p for p in (tmp_path / "cache" / "vla_flow" / "data").iterdir() if not p.name.startswith(".")]
    marker = read_marker(written)

    def no_second_conversion(*args, **kwargs):
        raise AssertionError("train converted the recordings again instead of reading convert's folder")

    monkeypatch.setattr(convert_module, "_write_dataset", no_second_conversion)
    folder, dataset = pipeline.converted(load_config(TASK, overrides=[hint.removeprefix("--set ")]))
    assert folder == written and read_marker(written) == marker
    assert dataset["train"].num_rows > 0

    # with task.data_dir, convert writes there and the hint names that folder
    mine = tmp_path / "my data"
    monkeypatch.setattr(convert_module, "_write_dataset", write_dataset)
    hint = convert_stage(load_config(TASK, overrides=[f"task.data_dir={mine}"]), str(capture.root))
    assert hint == f"--set task.data_dir='{mine.absolute()}'"  # quoted: the path has a space
    monkeypatch.setattr(pipeline, "_opened", {})
    monkeypatch.setattr(convert_module, "_write_dataset", no_second_conversion)
    folder, _ = pipeline.converted(load_config(TASK, overrides=[f"task.data_dir={mine}"]))
    assert folder == mine and open_dataset(mine)[0]["train"].num_rows > 0


def test_the_split_is_unchanged_by_qvl_data():
    """Recorded and capture-tool episode names split as by vla_flow's own code (threshold, then dealt by
    rank when a split is left empty) before it moved to qvl.data.split_items (digests computed with
    that code, at commit a2fa36d)."""
    import hashlib
    import json

    def names(n):
        return [f"episode_{i:06d}" for i in range(n)]

    expected = {(3, 0.1, 0.2): "1b49e54d2d8e545d", (10, 0.1, 0.2): "695e6f6b5bb2c085",
                (40, 0.1, 0.1): "dc3d15c3666c1c99", (500, 0.1, 0.2): "c04e85c7def4eeff"}
    for (n, val, test), digest in expected.items():
        splits = split_episodes(names(n), val, test)
        assert hashlib.sha256(json.dumps(splits).encode()).hexdigest()[:16] == digest, (n, val, test)
