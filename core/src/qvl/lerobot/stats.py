"""``meta/stats.json``: per-feature statistics, in the shapes LeRobot's normalisation expects.

Per feature: ``min``, ``max``, ``mean``, ``std`` (population) and ``count`` (frames). A numeric
feature of shape ``[d]`` has ``[d]``-shaped values (a scalar feature ``[1]``). A video feature has
per-channel values divided by 255 with shape ``[3, 1, 1]`` (LeRobot's ``compute_episode_stats``),
computed from the frames as given, before encoding, as LeRobot does. Statistics of several parts
(episodes, or a data set and appended episodes) are merged with the count-weighted parallel
formula of LeRobot's ``aggregate_feature_stats``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STAT_KEYS = ("min", "max", "mean", "std", "count")  # what qvl writes; LeRobot adds quantiles q01...q99


def feature_stats(values: Any, *, image: bool = False) -> dict[str, Any]:
    """Statistics of one feature over the frames of one part (numpy arrays, float64).

    :param values: ``(frames,)`` or ``(frames, d)`` numbers, or ``(frames, H, W, 3)`` uint8 images.
    :param image: per-channel statistics scaled to [0, 1], shaped ``(3, 1, 1)``.
    """
    import numpy as np

    array = np.asarray(values)
    frames = array.shape[0]
    if image:
        flat = array.reshape(-1, array.shape[-1]).astype(np.float64) / 255.0
        shape: tuple[int, ...] = (array.shape[-1], 1, 1)
    else:
        flat = array.reshape(frames, -1).astype(np.float64)
        shape = (flat.shape[1],)
    return {"min": flat.min(axis=0).reshape(shape), "max": flat.max(axis=0).reshape(shape),
            "mean": flat.mean(axis=0).reshape(shape), "std": flat.std(axis=0).reshape(shape),
            "count": np.array([frames])}


def merge_stats(parts: Sequence[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Merge per-part statistics (``{feature: {stat: array}}``) into one, feature by feature.

    Means are weighted by counts; the variance is the weighted mean of each part's variance plus
    its squared distance to the total mean (exact for population statistics).
    """
    import numpy as np

    merged: dict[str, dict[str, Any]] = {}
    for key in dict.fromkeys(k for part in parts for k in part):
        group = [part[key] for part in parts if key in part]
        counts = np.array([float(np.asarray(s["count"]).reshape(-1)[0]) for s in group])
        means = np.stack([np.asarray(s["mean"], np.float64) for s in group])
        stds = np.stack([np.asarray(s["std"], np.float64) for s in group])
        weights = counts.reshape((-1,) + (1,) * (means.ndim - 1))
        total = counts.sum()
        mean = (means * weights).sum(axis=0) / total
        variance = ((stds**2 + (means - mean) ** 2) * weights).sum(axis=0) / total
        merged[key] = {"min": np.min(np.stack([np.asarray(s["min"], np.float64) for s in group]), axis=0),
                       "max": np.max(np.stack([np.asarray(s["max"], np.float64) for s in group]), axis=0),
                       "mean": mean, "std": np.sqrt(variance), "count": np.array([int(total)])}
    return merged


def to_json(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Nested lists, as ``stats.json`` holds them (LeRobot reads them back with ``np.array``)."""
    import numpy as np

    return {key: {stat: np.asarray(value).tolist() for stat, value in values.items()}
            for key, values in stats.items()}
