"""Training samples: one per kept frame ``t`` of a converted split, and their batches.

A sample is what the policy sees at ``t`` and what it must output:

* the window: steps ``t - (num_frames-1)*frame_skip, ..., t - frame_skip, t`` (oldest first),
  each clamped to 0, so the first frame is repeated before the episode starts;
* the state: the action of step ``t - 1`` (at ``t = 0``: the rest action, mouse at the centre,
  nothing pressed);
* the target: the actions of steps ``t .. t + chunk_size - 1``; past the episode's end the last
  action is repeated and marked not ``valid`` (not trained on, not scored), as LeRobot's
  ``action_is_pad``.

Features come from a :class:`~qvl.features.FeatureStore` keyed by :func:`frame_id` (per-frame
encoding: one entry per frame, shared by every window it appears in) or :func:`window_id`
(joint encoding: one entry per window).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from qvl_vla_flow.actions import MOUSE_DIMS, RELEASED, ActionSpace

MEMO_BYTES = 2 * 2**30


def frame_id(episode: str, frame: int) -> str:
    return f"{episode}:{int(frame)}"


def window_id(episode: str, step: int) -> str:
    return f"{episode}@{int(step)}"


def window_steps(step: int, num_frames: int, frame_skip: int) -> list[int]:
    """Steps of the window ending at ``step``, oldest first, clamped at the episode's start."""
    return [max(0, step - k * frame_skip) for k in range(num_frames - 1, -1, -1)]


def rest_action(space: ActionSpace) -> np.ndarray:
    """Nothing pressed, the cursor at the canvas centre, not moving."""
    action = np.full(space.dim, RELEASED, dtype=np.float32)
    action[: len(MOUSE_DIMS)] = 0.0
    return action


class EpisodeTable:
    """A converted split's columns, grouped by episode and ordered by step (no images read)."""

    def __init__(self, table: Any):
        columns = table.select_columns(["episode", "step", "frame", "instruction", "action"]).to_dict()
        order = sorted(range(len(columns["episode"])), key=lambda i: (columns["episode"][i], columns["step"][i]))
        self.episodes: dict[str, dict[str, Any]] = {}
        for i in order:
            name = columns["episode"][i]
            entry = self.episodes.setdefault(name, {"rows": [], "frames": [], "actions": [],
                                                    "instruction": columns["instruction"][i]})
            if columns["step"][i] != len(entry["frames"]):
                raise ValueError(f"episode {name}: steps are not 0..n-1 (found {columns['step'][i]} "
                                 f"after {len(entry['frames'])} steps)")
            entry["rows"].append(i)
            entry["frames"].append(int(columns["frame"][i]))
            entry["actions"].append(columns["action"][i])
        for entry in self.episodes.values():
            entry["actions"] = np.asarray(entry["actions"], dtype=np.float32)
        self.index = [(name, step) for name, entry in self.episodes.items() for step in range(len(entry["frames"]))]

    def __len__(self) -> int:
        return len(self.index)


@attrs.frozen
class SplitInfo:
    """What scoring needs about a split besides its samples (``qvl.Samples.info``): the training
    split's :func:`action_statistics`, the constant baselines' actions."""

    statistics: dict[str, Any]


class WindowSamples(Sequence):
    """The samples of one split (see the module docstring), features read lazily from ``store``."""

    def __init__(self, table: EpisodeTable, config: Any, store: Any):
        self.table = table
        self.config = config
        self.store = store
        self.space = config.action_space
        # every window reads num_frames entries and every entry is in num_frames windows: keep what
        # was read in memory while the whole store fits in MEMO_BYTES (a tiny backbone's always does)
        self._memo: dict[str, np.ndarray] | None = None
        self._memo_checked = False

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        name, step = self.table.index[index]
        entry = self.table.episodes[name]
        c = self.config
        steps = window_steps(step, c.num_frames, c.frame_skip)
        if c.encoding == "joint":
            features = self._features(window_id(name, step))
        else:
            features = np.stack([self._features(frame_id(name, entry["frames"][s])) for s in steps])
        actions = entry["actions"]
        sample: dict[str, Any] = {
            "id": window_id(name, step), "episode": name, "step": step, "frames": [entry["frames"][s] for s in steps],
            "instruction": entry["instruction"], "features": features,
            "state": actions[step - 1] if step > 0 else rest_action(self.space),
        }
        chunk = actions[step: step + c.chunk_size]
        valid = np.zeros(c.chunk_size, dtype=bool)
        valid[: len(chunk)] = True
        if len(chunk) < c.chunk_size:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], c.chunk_size - len(chunk), axis=0)])
        sample["actions"], sample["valid"] = chunk, valid
        return sample

    def _features(self, key: str) -> np.ndarray:
        """``[tokens, D]`` for a frame (or ``[frames, tokens, D]`` for a joint window)."""
        if self._memo is not None and key in self._memo:
            return self._memo[key]
        value = self._read(key)
        if not self._memo_checked:
            self._memo_checked = True
            if value.nbytes * len(self.store) <= MEMO_BYTES:
                self._memo = {}
        if self._memo is not None:
            self._memo[key] = value
        return value

    def _read(self, key: str) -> np.ndarray:
        tokens = frame_tokens(self.store[key], self.config.feature_pooling)
        return tokens if self.config.encoding == "joint" else tokens[0]


def frame_tokens(item: Mapping[str, Any], pooling: str) -> np.ndarray:
    """A feature item (:func:`qvl.features.extract`'s, or the cache's) as ``[items, N, D]`` tokens:
    the pooled visual tokens of each image, then the instruction's token when there is one."""
    visual = item["visual"].float().numpy()
    if pooling == "mean":  # mean pooling gives [items, D], grid:N [items, N, D]
        visual = visual[:, None, :]
    if "text" in item:
        text = item["text"].float().numpy()
        visual = np.concatenate([visual, np.broadcast_to(text, (visual.shape[0], 1, text.shape[-1]))], axis=1)
    return visual


def collate(samples: list[dict[str, Any]], use_state: bool = True) -> dict[str, Any]:
    """Stack samples into tensors: ``features [B, F, N, D]``, ``state [B, A]``, ``actions [B, C, A]``, ``valid``."""
    import torch

    batch: dict[str, Any] = {
        "features": torch.from_numpy(np.stack([s["features"] for s in samples])).float(),
        "actions": torch.from_numpy(np.stack([s["actions"] for s in samples])).float(),
        "valid": torch.from_numpy(np.stack([s["valid"] for s in samples])),
        "refs": [(s["episode"], s["step"]) for s in samples],
    }
    if use_state:
        batch["state"] = torch.from_numpy(np.stack([s["state"] for s in samples])).float()
    return batch


def action_statistics(table: EpisodeTable, space: ActionSpace) -> dict[str, Any]:
    """Per-dimension mean action and majority binary state over a (training) split: the baselines."""
    actions = np.concatenate([entry["actions"] for entry in table.episodes.values()])
    mean = actions.mean(axis=0)
    majority = np.where((actions > 0).mean(axis=0) > 0.5, 1.0, RELEASED)
    return {"mean": mean.tolist(), "majority": majority.tolist(), "frames": int(len(actions)),
            "names": space.names}
