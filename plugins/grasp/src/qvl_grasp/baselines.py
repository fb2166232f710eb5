"""Mask-based baselines, scored by the same code as the model.

They see the ground-truth object mask, which the model does not, so PCA and the minimum-area
rectangle are strong references on single-object scenes; the random grasp is the floor. Sizes a
mask cannot give (the jaw size, and the random grasp's opening) are the training split's medians.
"""

from __future__ import annotations

import math
from typing import Any

from qvl_grasp.geometry import Grasp, fold_angle

OPENING_MARGIN = 1.3  # open a little wider than the object, as the annotations do
MAX_POINTS = 4000


def _points(mask: Any) -> Any:
    import numpy as np

    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise ValueError("empty object mask")
    return np.stack([xs, ys], axis=1).astype(np.float64) + 0.5


def random_grasp(mask: Any, rng: Any, opening: float, jaw: float) -> Grasp:
    """A centre drawn from the mask's pixels, any angle, the median sizes."""
    points = _points(mask)
    x, y = points[int(rng.integers(len(points)))]
    return Grasp(cx=float(x), cy=float(y), theta=float(rng.uniform(-90, 90)), w=opening, h=jaw)


def pca_grasp(mask: Any, jaw: float) -> Grasp:
    """Grasp at the centroid, across the principal axis, opening to the object's extent there."""
    import numpy as np

    points = _points(mask)
    centre = points.mean(axis=0)
    centred = points - centre
    _, vectors = np.linalg.eigh(np.cov(centred.T))
    minor = vectors[:, 0]  # eigh sorts ascending: the first is the minor axis
    extent = centred @ minor
    theta = math.degrees(math.atan2(-minor[1], minor[0]))
    return Grasp(cx=float(centre[0]), cy=float(centre[1]), theta=fold_angle(theta),
                 w=float(extent.max() - extent.min()) * OPENING_MARGIN, h=jaw)


def min_area_rect_grasp(mask: Any, jaw: float) -> Grasp:
    """Grasp across the short side of the minimum-area rectangle around the mask (shapely)."""
    import numpy as np
    from shapely.geometry import MultiPoint

    points = _points(mask)
    if len(points) > MAX_POINTS:  # the hull needs the outline only; thin out big masks
        points = points[np.linspace(0, len(points) - 1, MAX_POINTS).astype(int)]
    rect = MultiPoint([tuple(p) for p in points]).convex_hull.minimum_rotated_rectangle
    corners = list(rect.exterior.coords)[:4]
    if len(corners) < 4:  # degenerate mask (a line): fall back to PCA
        return pca_grasp(mask, jaw)
    edges = [(corners[i], corners[(i + 1) % 4]) for i in range(2)]
    lengths = [math.dist(a, b) for a, b in edges]
    short = int(np.argmin(lengths))
    (x0, y0), (x1, y1) = edges[short]
    centre = rect.centroid
    theta = math.degrees(math.atan2(-(y1 - y0), x1 - x0))
    return Grasp(cx=centre.x, cy=centre.y, theta=fold_angle(theta), w=lengths[short] * OPENING_MARGIN, h=jaw)


BASELINES = ("random", "pca", "min_area_rect")


def baseline_grasp(name: str, mask: Any, rng: Any, opening: float, jaw: float) -> Grasp:
    if name == "random":
        return random_grasp(mask, rng, opening, jaw)
    if name == "pca":
        return pca_grasp(mask, jaw)
    if name == "min_area_rect":
        return min_area_rect_grasp(mask, jaw)
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
