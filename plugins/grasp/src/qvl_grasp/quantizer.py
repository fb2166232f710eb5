"""Grasps <-> five integers, the text the model reads and writes: ``"cx cy theta w h"``.

``cx`` is in thousandths of the image width, ``cy`` of the height, ``w`` and ``h`` of the longer
image side (one scale for both, so the rectangle keeps its shape); all clamped to [0, 1000].
``theta`` in [-90, 90) maps to the bin ``round(theta) + 90`` in [0, 179]. At 640 px a step is
0.64 px, so the round-trip error is at most 0.32 px (under 1 px) and 0.5 degree (under 1 degree).
"""

from __future__ import annotations

import re

import attrs

from qvl_grasp.geometry import Grasp, fold_angle

COORD_MAX = 1000
ANGLE_BINS = 180
FIELDS = ("cx", "cy", "theta", "w", "h")
FIELD_MAX = (COORD_MAX, COORD_MAX, ANGLE_BINS - 1, COORD_MAX, COORD_MAX)
_NUMBER = r"(0|[1-9][0-9]{0,3})"
_ANSWER = re.compile(" ".join([_NUMBER] * 5))


def _clamp(value: int, high: int) -> int:
    return max(0, min(high, value))


@attrs.frozen
class Quantizer:
    """Quantizes grasps of one image size."""

    width: int
    height: int

    @property
    def size_scale(self) -> float:
        return float(max(self.width, self.height))

    def encode(self, grasp: Grasp) -> tuple[int, int, int, int, int]:
        scale = self.size_scale
        theta_bin = (round(fold_angle(grasp.theta)) + 90) % ANGLE_BINS
        return (_clamp(round(grasp.cx / self.width * COORD_MAX), COORD_MAX),
                _clamp(round(grasp.cy / self.height * COORD_MAX), COORD_MAX),
                theta_bin,
                _clamp(round(grasp.w / scale * COORD_MAX), COORD_MAX),
                _clamp(round(grasp.h / scale * COORD_MAX), COORD_MAX))

    def decode(self, bins: tuple[int, ...] | list[int]) -> Grasp:
        cx, cy, theta, w, h = bins
        scale = self.size_scale
        return Grasp(cx=cx / COORD_MAX * self.width, cy=cy / COORD_MAX * self.height,
                     theta=fold_angle(theta - 90.0), w=w / COORD_MAX * scale, h=h / COORD_MAX * scale)


def bins_to_text(bins: tuple[int, ...] | list[int]) -> str:
    return " ".join(str(int(b)) for b in bins)


def parse_answer(text: str) -> tuple[int, int, int, int, int] | None:
    """The five bins of an answer, or ``None`` unless it is exactly five in-range integers, one space apart."""
    match = _ANSWER.fullmatch(text)
    if match is None:
        return None
    bins = tuple(int(g) for g in match.groups())
    if any(b > high for b, high in zip(bins, FIELD_MAX)):
        return None
    return bins  # type: ignore[return-value]
