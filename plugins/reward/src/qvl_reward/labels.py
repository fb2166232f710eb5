"""Reward labels: the class of a ``reward_bins`` value, as the seed defines it."""

from __future__ import annotations

import math
from typing import Any


def label_of(value: Any) -> int:
    """Class index of one label cell.

    A vector (one-hot or scores over bins) gives its argmax (the first one on ties). A scalar, an
    empty or an all-zero vector gives class 0: the seed's rule, which treats "no reward recorded" as
    the lowest bin.
    """
    if value is None:
        return 0
    if isinstance(value, (list, tuple)) or hasattr(value, "tolist"):
        values = list(value.tolist() if hasattr(value, "tolist") else value)
        if not values or all(v == 0 or (isinstance(v, float) and math.isnan(v)) for v in values):
            return 0
        best = max(range(len(values)), key=lambda i: (values[i], -i))
        return int(best)
    return 0


def classes_of(value: Any) -> int | None:
    """Number of classes a label cell implies (its length), or None for a scalar."""
    if isinstance(value, (list, tuple)) or hasattr(value, "__len__"):
        return len(value)
    return None
