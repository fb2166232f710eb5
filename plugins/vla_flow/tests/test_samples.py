"""Windows, chunks, padding, state and feature layout of the training samples (no backbone)."""

import numpy as np
import pytest
import torch
from datasets import Dataset

from qvl_vla_flow.actions import ActionSpace
from qvl_vla_flow.config import VlaFlowConfig
from qvl_vla_flow.samples import (EpisodeTable, WindowSamples, action_statistics, collate, frame_id, rest_action,
                                  window_id, window_steps)

SPACE = ActionSpace()


def table(lengths={"b": 3, "a": 5}):
    rows = {"episode": [], "step": [], "frame": [], "instruction": [], "action": []}
    for name, length in lengths.items():
        for step in reversed(range(length)):  # rows out of order: the table sorts them
            rows["episode"].append(name)
            rows["step"].append(step)
            rows["frame"].append(10 * step + 1)  # video frame numbers differ from steps (dropped duplicates)
            rows["instruction"].append(f"go to {name}")
            rows["action"].append([float(step)] + [ord(name)] * (SPACE.dim - 1))
    return EpisodeTable(Dataset.from_dict(rows))


class FakeStore:
    def __init__(self, entries):
        self.entries = entries
        self.reads = 0

    def __len__(self):
        return len(self.entries)

    def __getitem__(self, key):
        self.reads += 1
        return self.entries[key]


def per_frame_store(episodes, tokens=4, width=3):
    entries = {}
    for name, entry in episodes.episodes.items():
        for frame in entry["frames"]:
            value = float(frame) + (0.5 if name == "b" else 0.0)
            entries[frame_id(name, frame)] = {"visual": torch.full((1, tokens, width), value),
                                             "text": torch.full((width,), -value)}
    return FakeStore(entries)


def test_window_repeats_the_first_frame_before_the_episode_starts():
    assert window_steps(0, 3, 2) == [0, 0, 0]
    assert window_steps(3, 3, 2) == [0, 1, 3]
    assert window_steps(9, 3, 2) == [5, 7, 9]
    assert window_steps(4, 1, 2) == [4]


def test_a_sample_holds_its_window_state_and_padded_chunk():
    episodes = table()
    config = VlaFlowConfig(chunk_size=4, num_frames=3, frame_skip=2)
    samples = WindowSamples(episodes, config, per_frame_store(episodes))
    assert len(samples) == 8
    by_id = {samples[i]["id"]: samples[i] for i in range(len(samples))}
    first, late = by_id[window_id("a", 0)], by_id[window_id("a", 3)]
    assert first["frames"] == [1, 1, 1] and late["frames"] == [1, 11, 31]
    np.testing.assert_array_equal(first["state"], rest_action(SPACE))
    assert late["state"][0] == 2.0  # the previous step's action
    # steps 3 and 4 are real, then the last action repeats as masked padding
    assert late["actions"][:, 0].tolist() == [3.0, 4.0, 4.0, 4.0]
    assert late["valid"].tolist() == [True, True, False, False]
    # features: [frames, visual tokens + the text token, width], oldest frame first
    assert late["features"].shape == (3, 5, 3)
    assert late["features"][:, 0, 0].tolist() == [1.0, 11.0, 31.0]
    assert late["features"][:, -1, 0].tolist() == [-1.0, -11.0, -31.0]
    assert by_id[window_id("b", 2)]["features"][-1, 0, 0] == 21.5


def test_joint_encoding_reads_one_entry_per_window():
    episodes = table({"a": 2})
    config = VlaFlowConfig(chunk_size=2, num_frames=3, encoding="joint")
    store = FakeStore({window_id("a", s): {"visual": torch.full((3, 4, 2), float(s)), "text": torch.zeros(2)}
                       for s in range(2)})
    sample = WindowSamples(episodes, config, store)[1]
    assert sample["features"].shape == (3, 5, 2) and sample["features"][0, 0, 0] == 1.0


def test_collate_and_baseline_statistics():
    episodes = table()
    config = VlaFlowConfig(chunk_size=4)
    samples = WindowSamples(episodes, config, per_frame_store(episodes))
    batch = collate([samples[0], samples[1]])
    assert batch["features"].shape == (2, 3, 5, 3) and batch["actions"].shape == (2, 4, SPACE.dim)
    assert batch["state"].shape == (2, SPACE.dim) and batch["valid"].dtype == torch.bool
    assert "state" not in collate([samples[0]], use_state=False)
    statistics = action_statistics(episodes, SPACE)
    assert statistics["frames"] == 8
    assert statistics["mean"][0] == pytest.approx((0 + 1 + 2 + 3 + 4 + 0 + 1 + 2) / 8)
    assert statistics["majority"][0] == 1.0  # 6 of 8 steps are > 0


def test_each_frame_is_read_from_the_store_once(monkeypatch):
    episodes = table()
    store = per_frame_store(episodes)
    samples = WindowSamples(episodes, VlaFlowConfig(chunk_size=2), store)
    first = [samples[i]["features"] for i in range(len(samples))]
    again = [samples[i]["features"] for i in range(len(samples))]
    assert store.reads == 8  # 8 frames, in 3 windows each, read once
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    monkeypatch.setattr("qvl_vla_flow.samples.MEMO_BYTES", 0)  # a store too large to keep: read every time
    store = per_frame_store(episodes)
    samples = WindowSamples(episodes, VlaFlowConfig(chunk_size=2), store)
    [samples[i] for i in range(len(samples))]
    assert store.reads == 24
