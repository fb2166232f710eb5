"""Mask-based baselines, scored by the same code as the model.

``random``, ``pca`` and ``min_area_rect`` see the target object's true mask (an oracle: the model
sees only the image, and on a scene of several objects must find the named one itself). On a
single bar they are strong references; on a mug, a pan, a T or an L, whose grasp is at a part, the
principal axis misses. ``largest_object`` has no oracle: PCA on the largest object of the labelled
mask, which is what a mask-only method does without knowing which object is meant. Sizes a mask
cannot give (the jaw size, and the random grasp's opening) are the training split's medians.
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
    import shapely

    points = _points(mask)
    if len(points) > MAX_POINTS:  # the hull needs the outline only; thin out big masks
        points = points[np.linspace(0, len(points) - 1, MAX_POINTS).astype(int)]
    # from the array at once: a Point object per pixel cost 50 ms a mask
    rect = shapely.multipoints(points).convex_hull.minimum_rotated_rectangle
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


def largest_object_grasp(labels: Any, jaw: float) -> Grasp:
    """PCA across the object with the most pixels in the labelled mask (0 is the background)."""
    import numpy as np

    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel())
    counts[0] = 0
    if not counts.any():
        raise ValueError("labelled mask without objects")
    return pca_grasp(labels == int(np.argmax(counts)), jaw)


BASELINES = ("random", "pca", "min_area_rect", "largest_object")
# the names in the comparison table: which baselines were told where the target is
BASELINE_TITLES = {"random": "random (oracle mask)", "pca": "pca (oracle mask)",
                   "min_area_rect": "min_area_rect (oracle mask)", "largest_object": "largest object"}


def baseline_grasp(name: str, mask: Any, rng: Any, opening: float, jaw: float, labels: Any = None) -> Grasp:
    """``name``'s grasp from the target's ``mask`` (or, for ``largest_object``, every object's ``labels``;
    without them the mask stands for the only object)."""
    if name == "random":
        return random_grasp(mask, rng, opening, jaw)
    if name == "pca":
        return pca_grasp(mask, jaw)
    if name == "min_area_rect":
        return min_area_rect_grasp(mask, jaw)
    if name == "largest_object":
        return largest_object_grasp(mask if labels is None else labels, jaw)
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
