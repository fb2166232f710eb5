"""The objects of the synthetic scenes: each shape's outline parts and its annotated grasps.

An object is built in its own frame: pixels, ``u`` to the right and ``v`` down as on the image, its
main axis along ``u``, its bounding box centred on the origin. :meth:`ObjectModel.placed` turns it
counter-clockwise (as seen) and moves it onto the table. Two kinds of shape:

* principal-axis shapes (``bar``, ``ellipse``, ``capsule``): grasped across the long axis at five
  places along it, as in the single-object scenes;
* part shapes, grasped at one part, so that the grasp across the mask's principal axis is wrong:
  a ``mug`` by its handle, a ``pan`` across its long handle, a ``T-shape`` across its stem and an
  ``L-shape`` across its longer arm.

The opening ``w`` is 1.3 times the thickness of what the jaws close on, as in the single scenes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from qvl_grasp.geometry import Grasp

PRINCIPAL_SHAPES = ("bar", "ellipse", "capsule")
PART_SHAPES = ("mug", "pan", "T-shape", "L-shape")
SHAPES = PRINCIPAL_SHAPES + PART_SHAPES
GRASP_POSITIONS = (0.0, -0.15, 0.15, -0.3, 0.3)  # along the long axis, as a fraction of the length
HANDLE_POSITIONS = (0.55, 0.35, 0.75)  # along a pan's handle from where it leaves the body
# along a T's stem or an L's long arm from the corner: its outer part, away from the middle of the
# bounding box, where a grasp across the minimum-area rectangle would land
STEM_POSITIONS = (0.7, 0.55, 0.85)
OPENING = 1.3  # the opening, in thicknesses of what the jaws close on
JAW = 0.45  # the jaw size, in thicknesses (principal-axis shapes, stems and arms)

Points = list[tuple[float, float]]


def outline(shape: str, length: float, thickness: float, cx: float, cy: float, axis_deg: float) -> Points:
    """Polygon of a principal-axis shape, its long axis at ``axis_deg`` (counter-clockwise as seen)."""
    half_l, half_t = length / 2, thickness / 2
    if shape == "bar":
        local = [(-half_l, -half_t), (half_l, -half_t), (half_l, half_t), (-half_l, half_t)]
    elif shape == "ellipse":
        local = [(half_l * math.cos(t), half_t * math.sin(t)) for t in (i * math.pi / 24 for i in range(48))]
    else:  # capsule: a bar with round ends
        straight = half_l - half_t
        local = [(straight + half_t * math.cos(t), half_t * math.sin(t))
                 for t in (-math.pi / 2 + i * math.pi / 12 for i in range(13))]
        local += [(-straight - half_t * math.cos(t), -half_t * math.sin(t))
                  for t in (-math.pi / 2 + i * math.pi / 12 for i in range(13))]
    a = math.radians(axis_deg)
    return [(cx + u * math.cos(a) + v * math.sin(a), cy - u * math.sin(a) + v * math.cos(a)) for u, v in local]


def local_thickness(shape: str, thickness: float, length: float, t: float) -> float:
    """Thickness of a principal-axis shape at ``t`` (a fraction of the length from its middle)."""
    if shape == "ellipse":
        return thickness * math.sqrt(max(0.0, 1.0 - (2.0 * t) ** 2))
    if shape == "capsule":
        straight = (length - thickness) / 2
        offset = abs(t) * length - straight
        return thickness if offset <= 0 else 2.0 * math.sqrt(max(0.0, (thickness / 2) ** 2 - offset**2))
    return thickness


def axis_grasps(shape: str, length: float, thickness: float, cx: float, cy: float, axis_deg: float) -> list[Grasp]:
    """Grasps across the long axis at :data:`GRASP_POSITIONS`, skipping places thinner than half."""
    grasps = []
    a = math.radians(axis_deg)
    for t in GRASP_POSITIONS:
        local = local_thickness(shape, thickness, length, t)
        if local < thickness * 0.5:
            continue
        gx, gy = cx + t * length * math.cos(a), cy - t * length * math.sin(a)
        grasps.append(Grasp(cx=gx, cy=gy, theta=axis_deg + 90.0, w=OPENING * local, h=JAW * thickness).folded())
    return grasps


def _box(u0: float, v0: float, u1: float, v1: float) -> Points:
    return [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]


def _disc(radius: float, sides: int = 40) -> Points:
    return [(radius * math.cos(2 * math.pi * i / sides), radius * math.sin(2 * math.pi * i / sides))
            for i in range(sides)]


def _across(u: float, v: float, thickness: float, jaw: float) -> Grasp:
    """A grasp whose jaws close along ``v``, across a part along ``u`` that is ``thickness`` thick."""
    return Grasp(cx=u, cy=v, theta=90.0, w=OPENING * thickness, h=jaw)


@attrs.frozen
class ObjectModel:
    """One object: the polygons whose union it is, shaded details drawn on top, and its grasps."""

    shape: str
    parts: tuple[Points, ...]
    details: tuple[tuple[Points, float], ...]  # polygon, shade (below 1 darker, above 1 lighter)
    grasps: tuple[Grasp, ...]

    def placed(self, cx: float, cy: float, angle: float) -> ObjectModel:
        """This object turned by ``angle`` degrees counter-clockwise (as seen), its centre at (cx, cy)."""
        a = math.radians(angle)
        cos, sin = math.cos(a), math.sin(a)

        def move(points: Points) -> Points:
            return [(cx + u * cos + v * sin, cy - u * sin + v * cos) for u, v in points]

        grasps = tuple(Grasp(cx=cx + g.cx * cos + g.cy * sin, cy=cy - g.cx * sin + g.cy * cos,
                             theta=g.theta + angle, w=g.w, h=g.h).folded() for g in self.grasps)
        return ObjectModel(self.shape, tuple(move(p) for p in self.parts),
                           tuple((move(p), shade) for p, shade in self.details), grasps)

    def centred(self) -> ObjectModel:
        """This object moved so that its bounding box is centred on the origin."""
        us = [u for part in self.parts for u, _ in part]
        vs = [v for part in self.parts for _, v in part]
        du, dv = -(min(us) + max(us)) / 2, -(min(vs) + max(vs)) / 2

        def move(points: Points) -> Points:
            return [(u + du, v + dv) for u, v in points]

        return ObjectModel(self.shape, tuple(move(p) for p in self.parts),
                           tuple((move(p), shade) for p, shade in self.details),
                           tuple(g.shifted(du, dv) for g in self.grasps))


def build_object(shape: str, rng: Any, scale: float) -> ObjectModel:
    """A random-sized ``shape`` in its own frame (sizes in pixels at 480 px image height, times ``scale``)."""
    if shape in PRINCIPAL_SHAPES:
        length, thickness = rng.uniform(150, 220) * scale, rng.uniform(50, 75) * scale
        return ObjectModel(shape, (outline(shape, length, thickness, 0, 0, 0),),
                           ((outline(shape, length * 0.8, thickness * 0.25, 0, 0, 0), 1.4),),
                           tuple(axis_grasps(shape, length, thickness, 0, 0, 0)))
    if shape in ("mug", "pan"):
        return _vessel(shape, rng, scale).centred()
    if shape == "T-shape":
        return _t_shape(rng, scale).centred()
    if shape == "L-shape":
        return _l_shape(rng, scale).centred()
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _vessel(shape: str, rng: Any, scale: float) -> ObjectModel:
    """A round body with a handle along ``u``: a mug (short thick handle, dark inside) or a pan (long thin one)."""
    if shape == "mug":
        radius = rng.uniform(55, 72) * scale
        reach, thickness = rng.uniform(0.7, 0.9) * radius, rng.uniform(0.42, 0.52) * radius
        inside, places, jaw = (0.78 * radius, 0.45), (0.5,), 0.6 * reach
    else:
        radius = rng.uniform(58, 75) * scale
        reach, thickness = rng.uniform(1.2, 1.6) * radius, rng.uniform(0.28, 0.36) * radius
        inside, places, jaw = (0.84 * radius, 0.75), HANDLE_POSITIONS, 0.25 * reach
    # the handle starts inside the body so that their union is one piece
    handle = _box(0.85 * radius, -thickness / 2, radius + reach, thickness / 2)
    grasps = tuple(_across(radius + f * reach, 0.0, thickness, jaw) for f in places)
    return ObjectModel(shape, (_disc(radius), handle), ((_disc(inside[0]), inside[1]),), grasps)


def _t_shape(rng: Any, scale: float) -> ObjectModel:
    """A cross bar at ``u`` = 0 with a stem along ``u``; grasped across the stem."""
    thickness = rng.uniform(38, 52) * scale
    span, stem = rng.uniform(130, 180) * scale, rng.uniform(100, 145) * scale
    bar = _box(0.0, -span / 2, thickness, span / 2)
    leg = _box(0.9 * thickness, -thickness / 2, thickness + stem, thickness / 2)
    grasps = tuple(_across(thickness + f * stem, 0.0, thickness, JAW * thickness) for f in STEM_POSITIONS)
    return ObjectModel("T-shape", (bar, leg), (), grasps)


def _l_shape(rng: Any, scale: float) -> ObjectModel:
    """A long arm along ``u`` and a short one along ``v`` meeting at a corner; grasped across the long arm."""
    thickness = rng.uniform(38, 52) * scale
    long_arm, short_arm = rng.uniform(160, 210) * scale, rng.uniform(90, 130) * scale
    first = _box(0.0, 0.0, long_arm, thickness)
    second = _box(0.0, 0.9 * thickness, thickness, short_arm)
    free = long_arm - thickness  # the arm's length beyond the corner
    grasps = tuple(_across(thickness + f * free, thickness / 2, thickness, JAW * thickness) for f in STEM_POSITIONS)
    return ObjectModel("L-shape", (first, second), (), grasps)


def union_polygon(parts: Sequence[Points]) -> Any:
    """The object's parts as one shapely polygon (placement keeps objects apart with it)."""
    from shapely.geometry import Polygon
    from shapely.ops import unary_union

    return unary_union([Polygon(p) for p in parts])
