"""Grasp rectangles: corners <-> (cx, cy, theta, w, h), angle folding, rotated IoU, circular mean.

Conventions (those of the Cornell and OCID-Grasp annotations and of GG-CNN's loader):

* pixel coordinates, x to the right, y down;
* the first edge of an annotated rectangle (corner 0 -> corner 1) runs along the gripper's opening:
  its length is ``w`` (opening width), the second edge's length is ``h`` (jaw size);
* ``theta`` is the direction of that first edge in degrees, counter-clockwise as seen on the
  image (so ``atan2(-dy, dx)``), folded to [-90, 90): a parallel-jaw grasp is the same grasp
  turned by 180 degrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs


def fold_angle(theta: float) -> float:
    """``theta`` in degrees folded into [-90, 90) (period 180)."""
    folded = (theta + 90.0) % 180.0 - 90.0
    return -90.0 if folded >= 90.0 else folded


def angle_difference(a: float, b: float) -> float:
    """Smallest difference of two grasp angles in degrees, modulo 180: in [0, 90]."""
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def circular_mean(angles: Sequence[float], period: float = 180.0) -> float:
    """Mean of angles with the given period (the doubled-angle trick for period 180), folded."""
    if not angles:
        raise ValueError("circular_mean of no angles")
    scale = 2.0 * math.pi / period
    s = sum(math.sin(a * scale) for a in angles)
    c = sum(math.cos(a * scale) for a in angles)
    return fold_angle(math.atan2(s, c) / scale)


@attrs.frozen
class Grasp:
    """One oriented grasp rectangle in pixels and degrees."""

    cx: float
    cy: float
    theta: float
    w: float
    h: float

    @classmethod
    def from_corners(cls, corners: Sequence[Sequence[float]]) -> Grasp:
        """Four ``(x, y)`` corners in order around the rectangle -> a folded :class:`Grasp`."""
        if len(corners) != 4:
            raise ValueError(f"a grasp rectangle has 4 corners, got {len(corners)}")
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = ((float(x), float(y)) for x, y in corners)
        cx, cy = (x0 + x1 + x2 + x3) / 4.0, (y0 + y1 + y2 + y3) / 4.0
        dx, dy = x1 - x0, y1 - y0
        theta = math.degrees(math.atan2(-dy, dx))
        return cls(cx=cx, cy=cy, theta=fold_angle(theta), w=math.hypot(dx, dy), h=math.hypot(x2 - x1, y2 - y1))

    def folded(self) -> Grasp:
        return attrs.evolve(self, theta=fold_angle(self.theta))

    def corners(self) -> list[tuple[float, float]]:
        """The four corners, the first edge along the opening (inverse of :meth:`from_corners`)."""
        t = math.radians(self.theta)
        ux, uy = math.cos(t) * self.w / 2, -math.sin(t) * self.w / 2  # along the opening
        vx, vy = math.sin(t) * self.h / 2, math.cos(t) * self.h / 2  # along the jaws
        cx, cy = self.cx, self.cy
        return [(cx - ux - vx, cy - uy - vy), (cx + ux - vx, cy + uy - vy),
                (cx + ux + vx, cy + uy + vy), (cx - ux + vx, cy - uy + vy)]

    def rotated_about(self, x: float, y: float, degrees: float) -> Grasp:
        """This grasp after turning the image counter-clockwise (as seen) by ``degrees`` about (x, y)."""
        a = math.radians(degrees)
        dx, dy = self.cx - x, self.cy - y
        return Grasp(cx=x + dx * math.cos(a) + dy * math.sin(a), cy=y - dx * math.sin(a) + dy * math.cos(a),
                     theta=fold_angle(self.theta + degrees), w=self.w, h=self.h)

    def shifted(self, dx: float, dy: float) -> Grasp:
        return attrs.evolve(self, cx=self.cx + dx, cy=self.cy + dy)

    def as_dict(self) -> dict[str, float]:
        return {"cx": round(self.cx, 2), "cy": round(self.cy, 2), "theta": round(self.theta, 2),
                "w": round(self.w, 2), "h": round(self.h, 2)}


def polygon(grasp: Grasp):  # noqa: ANN201 - shapely is imported lazily
    from shapely.geometry import Polygon

    return Polygon(grasp.corners())


def rotated_iou(a: Grasp, b: Grasp) -> float:
    """Intersection over union of two oriented rectangles, computed on shapely polygons."""
    pa, pb = polygon(a), polygon(b)
    union = pa.union(pb).area
    return 0.0 if union <= 0 else pa.intersection(pb).area / union


def ensemble_mean(grasps: Sequence[Grasp]) -> Grasp:
    """Average of several predictions: arithmetic for position and size, circular for the angle."""
    n = len(grasps)
    if n == 0:
        raise ValueError("ensemble_mean of no grasps")
    return Grasp(cx=sum(g.cx for g in grasps) / n, cy=sum(g.cy for g in grasps) / n,
                 theta=circular_mean([g.theta for g in grasps]), w=sum(g.w for g in grasps) / n,
                 h=sum(g.h for g in grasps) / n)
