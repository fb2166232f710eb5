"""Statistics that task evaluations share: rank correlation and bootstrap confidence intervals.

Written here on numpy (a few lines each) rather than adding scipy to every plugin that reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank (``scipy.stats.rankdata``'s default)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    last = np.r_[first[1:], len(values)] - 1
    result = np.empty(len(values))
    result[order] = (first[group] + last[group]) / 2 + 1
    return result


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation, or None when either side is constant (it is undefined)."""
    if len(a) != len(b):
        raise ValueError(f"spearman of {len(a)} and {len(b)} values")
    if len(a) < 2:
        return None
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else None


def bootstrap_interval(statistic: Callable[[np.ndarray], float], units: int, *, resamples: int = 1000,
                       seed: int = 0, level: float = 0.95, groups: Sequence[Any] | None = None) -> list[float] | None:
    """Percentile bootstrap interval of ``statistic(indices)`` over ``units`` resampled with replacement.

    ``statistic`` gets an index array (a resample of ``range(units)``) and computes the metric on
    those units; call it with the same ``seed`` for two systems to compare them on the same resamples.
    ``groups`` (one key per unit): resample whole groups instead of units (a cluster bootstrap), for
    units that are not independent, such as many samples cut from one recording.
    Returns ``[low, high]``, or None without units or resamples.
    """
    if units == 0 or resamples == 0:
        return None
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = (rng.integers(0, units, units) for _ in range(resamples))
    else:
        if len(groups) != units:
            raise ValueError(f"{len(groups)} group keys for {units} units")
        _, inverse = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
        members = [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]
        draws = (np.concatenate([members[k] for k in rng.integers(0, len(members), len(members))])
                 for _ in range(resamples))
    values = np.array([statistic(indices) for indices in draws], dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def mean_interval(values: Sequence[float] | Any, **kwargs: Any) -> list[float] | None:
    """Bootstrap interval of the mean of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    return bootstrap_interval(lambda idx: float(values[idx].mean()), len(values), **kwargs)
