"""The evaluation's pictures: predicted against true progress, and confusion matrices."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CURVES = 6  # trajectories drawn as curves


def plot_progress(predictions: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """Left: every progress answer against the truth. Right: a few trajectories' forward clips,
    true and predicted progress against how far into the trajectory the clip ends."""
    from qvl.report import pyplot

    plt = pyplot()
    rows = [p for p in predictions if p["sample_type"] == "progress" and p["value"] is not None]
    if not rows:
        return None
    fig, (scatter, curves) = plt.subplots(1, 2, figsize=(11, 4.5))
    truth = np.array([int(p["truth"]) for p in rows])
    guess = np.array([p["value"] for p in rows])
    scatter.scatter(truth, guess, s=8, alpha=0.4)
    scatter.plot([0, 100], [0, 100], color="grey", linestyle="--", linewidth=1)
    scatter.set(xlabel="true progress", ylabel="predicted progress", xlim=(-3, 103), ylim=(-3, 103),
                title=f"{len(rows)} progress answers, MAE {np.abs(guess - truth).mean():.1f}")
    forward: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in rows:
        if p["strategy"] in ("forward_progress", "prefix"):
            forward[p["trajectory_id"]].append(p)
    chosen = sorted(forward, key=lambda t: -len(forward[t]))[:CURVES]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, trajectory in enumerate(chosen):
        points = sorted(forward[trajectory], key=lambda p: p["positions"][-1])
        x = [p["positions"][-1] for p in points]
        colour = colours[k % len(colours)]
        curves.plot(x, [int(p["truth"]) for p in points], color=colour, linestyle="--", linewidth=1)
        curves.plot(x, [p["value"] for p in points], color=colour, marker="o", markersize=3, label=trajectory)
    curves.set(xlabel="position of the clip's last frame in its trajectory", ylabel="progress",
               title="true (dashed) and predicted progress", ylim=(-3, 103))
    if chosen:
        curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_confusion(predictions: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """Paired questions: true against answered video (2x2 per type); progress: in 10-point bins. One
    panel each, side by side, drawn by ``qvl.report.confusion_axes``."""
    from qvl.report import confusion_axes, pyplot

    panels = []
    for kind in ("preference", "similarity"):
        rows = [p for p in predictions if p["sample_type"] == kind and p["value"] is not None]
        if rows:
            matrix = np.zeros((2, 2), dtype=int)
            for p in rows:
                matrix[int(p["truth"]) - 1, p["value"] - 1] += 1
            panels.append((kind, matrix, ["1", "2"]))
    rows = [p for p in predictions if p["sample_type"] == "progress" and p["value"] is not None]
    if rows:
        matrix = np.zeros((10, 10), dtype=int)
        for p in rows:
            matrix[min(int(p["truth"]) // 10, 9), min(p["value"] // 10, 9)] += 1
        panels.append(("progress (10-point bins)", matrix, [str(10 * k) for k in range(10)]))
    if not panels:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False)
    for ax, (title, matrix, labels) in zip(axes[0], panels):
        confusion_axes(ax, matrix.tolist(), title, xlabel="answered", ylabel="true", labels=labels)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
