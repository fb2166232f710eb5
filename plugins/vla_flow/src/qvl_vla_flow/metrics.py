"""Offline metrics of predicted action chunks against the recorded ones.

All over the valid (non-padded) steps of each chunk:

* ``mse`` per action dimension and averaged over dimensions (actions in [-1, 1]);
* ``key_accuracy`` / ``button_accuracy``: binary channels executed as the user would (pressed
  when above 0) against the recorded state, per channel-step;
* ``jerk``: mean squared third difference of the mouse position dims along the chunk, of the
  prediction and of the recording (a sampler that jitters has a larger jerk than the data);
* ``first_step``: MSE and key accuracy of the chunk's first action only, the one a policy
  executes at once (later steps depend on how the scene unfolds, the first on the frame alone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from qvl_vla_flow.actions import ActionSpace


def chunk_statistics(predicted: np.ndarray, target: np.ndarray, valid: np.ndarray,
                     space: ActionSpace) -> dict[str, Any]:
    """Sums that :func:`summarise` adds up over samples (one chunk ``[C, A]``)."""
    predicted, target = np.asarray(predicted, dtype=np.float64), np.asarray(target, dtype=np.float64)
    mask = np.asarray(valid, dtype=bool)
    p, y = predicted[mask], target[mask]
    binary = space.binary
    return {
        "squared_error": ((p - y) ** 2).sum(axis=0).tolist(),
        "steps": int(mask.sum()),
        "correct": ((p[:, binary] > 0) == (y[:, binary] > 0)).sum(axis=0).tolist(),
        "first_squared_error": ((p[:1] - y[:1]) ** 2).sum(axis=0).tolist(),
        "first_correct": ((p[:1, binary] > 0) == (y[:1, binary] > 0)).sum(axis=0).tolist(),
        "jerk": _jerk(p[:, :2]),
        "true_jerk": _jerk(y[:, :2]),
    }


def _jerk(positions: np.ndarray) -> tuple[float, int]:
    if len(positions) < 4:
        return (0.0, 0)
    third = np.diff(positions, n=3, axis=0)
    return (float((third ** 2).sum()), int(third.size))


def summarise(statistics: Iterable[dict[str, Any]], space: ActionSpace) -> dict[str, Any]:
    """Metrics over many chunks' :func:`chunk_statistics`."""
    squared = np.zeros(space.dim)
    correct = np.zeros(len(space.binary))
    first_squared = np.zeros(space.dim)
    first_correct = np.zeros(len(space.binary))
    chunks, steps, jerk, jerk_n, true_jerk, true_n = 0, 0, 0.0, 0, 0.0, 0
    for item in statistics:
        squared += item["squared_error"]
        correct += item["correct"]
        first_squared += item["first_squared_error"]
        first_correct += item["first_correct"]
        chunks += 1
        steps += item["steps"]
        jerk, jerk_n = jerk + item["jerk"][0], jerk_n + item["jerk"][1]
        true_jerk, true_n = true_jerk + item["true_jerk"][0], true_n + item["true_jerk"][1]
    steps_safe = max(steps, 1)
    per_dim = squared / steps_safe
    accuracy = correct / steps_safe
    keys = [space.binary.index(i) for i in space.key_indices]
    buttons = [j for j, i in enumerate(space.binary) if i not in space.key_indices]
    first_accuracy = first_correct / max(chunks, 1)
    return {
        "mse": float(per_dim.mean()),
        "first_step": {"mse": float(first_squared.mean() / max(chunks, 1)),
                       "key_accuracy": float(first_accuracy[keys].mean()) if keys else None},
        "mse_per_dim": {name: round(float(v), 5) for name, v in zip(space.names, per_dim)},
        "key_accuracy": float(accuracy[keys].mean()) if keys else None,
        "button_accuracy": float(accuracy[buttons].mean()) if buttons else None,
        "accuracy_per_channel": {space.names[i]: round(float(a), 5) for i, a in zip(space.binary, accuracy)},
        "jerk": jerk / max(jerk_n, 1),
        "true_jerk": true_jerk / max(true_n, 1),
        "steps": steps,
    }


def constant_chunk(vector: Sequence[float], length: int) -> np.ndarray:
    """A baseline's prediction: the same action at every step."""
    return np.repeat(np.asarray(vector, dtype=np.float64)[None], length, axis=0)
