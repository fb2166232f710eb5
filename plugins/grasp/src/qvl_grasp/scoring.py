"""Grasp metrics: the Cornell / OCID success criterion and the errors behind it.

A predicted rectangle succeeds when some ground-truth rectangle of the image has rotated IoU above
0.25 *and* an angle difference below 30 degrees (modulo 180). Errors are reported against the
matched ground truth: the one with the highest IoU, ties broken by the nearest centre.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import attrs

from qvl_grasp.geometry import Grasp, angle_difference, rotated_iou

IOU_THRESHOLD = 0.25
ANGLE_THRESHOLD = 30.0


@attrs.frozen
class Match:
    success: bool
    iou: float
    angle_error: float
    center_error: float


def match(prediction: Grasp, truths: Sequence[Grasp], iou_threshold: float = IOU_THRESHOLD,
          angle_threshold: float = ANGLE_THRESHOLD) -> Match:
    """Score one prediction against every ground-truth rectangle of its image."""
    if not truths:
        raise ValueError("cannot score a grasp against an image without ground-truth rectangles")
    scored = []
    success = False
    for truth in truths:
        iou = rotated_iou(prediction, truth)
        angle = angle_difference(prediction.theta, truth.theta)
        center = math.hypot(prediction.cx - truth.cx, prediction.cy - truth.cy)
        success = success or (iou > iou_threshold and angle < angle_threshold)
        scored.append((iou, -center, angle, center))
    iou, _, angle, center = max(scored)
    return Match(success=success, iou=iou, angle_error=angle, center_error=center)


def summarize(predictions: Sequence[Grasp | None], truths: Sequence[Sequence[Grasp]]) -> dict[str, Any]:
    """Success rate over all images (an invalid output is a failure); errors over the valid ones."""
    matches = [match(p, t) for p, t in zip(predictions, truths) if p is not None]
    total = len(truths)
    valid = len(matches)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    return {
        "images": total,
        "success_rate": sum(m.success for m in matches) / total if total else 0.0,
        "mean_iou": mean([m.iou for m in matches]),
        "mean_angle_error_deg": mean([m.angle_error for m in matches]),
        "mean_center_error_px": mean([m.center_error for m in matches]),
        "invalid_rate": (total - valid) / total if total else 0.0,
    }
