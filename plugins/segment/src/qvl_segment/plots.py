"""``--save-vis``: per episode, a timeline of true vs predicted segments under its frame thumbnails."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_EPISODES = 24  # pictures per call; the metrics cover every episode


def draw_timelines(predictions: Sequence[dict[str, Any]], episodes: Sequence[Any], task: Any,
                   out_dir: Path) -> list[Path]:
    """Write ``<episode_id>.png`` for the first episodes into ``out_dir``; returns the files."""
    from qvl.report import pyplot
    from qvl_segment.episodes import load_frames

    plt = pyplot()

    out_dir.mkdir(parents=True, exist_ok=True)
    skills = sorted({s.skill for e in episodes for s in e.segments}
                    | {str(r.get("skill")) for p in predictions for r in p["segments"]})
    colours = {skill: plt.get_cmap("tab10")(i % 10) for i, skill in enumerate(skills)}
    written = []
    for prediction, episode in list(zip(predictions, episodes))[:MAX_EPISODES]:
        numbers = np.asarray(prediction["frame_numbers"])
        images = load_frames(episode, numbers, tuple(task.image_size))
        figure, axes = plt.subplots(3, 1, figsize=(max(6.0, 0.6 * len(images)), 3.6),
                                    gridspec_kw={"height_ratios": [1.2, 1, 1]})
        strip = np.concatenate([np.asarray(image) for image in images], axis=1)
        axes[0].imshow(strip)
        axes[0].set_xticks((np.arange(len(images)) + 0.5) * images[0].width, [str(n) for n in numbers], fontsize=6)
        axes[0].set_yticks([])
        axes[0].set_title(f"{episode.episode_id}: {episode.task_name}", fontsize=8)
        rows = [("true", [(s.start_frame, s.end_frame, s.skill) for s in episode.segments]),
                ("predicted", [(r["start_frame"], r["end_frame"], str(r.get("skill")))
                               for r in prediction["segments"]])]
        for axis, (label, segments) in zip(axes[1:], rows):
            for start, end, skill in segments:
                axis.barh(0, end - start + 1, left=start - 0.5, color=colours.get(skill, "grey"), edgecolor="black")
                axis.text((start + end) / 2, 0, skill, ha="center", va="center", fontsize=6)
            axis.set_xlim(-0.5, episode.num_frames - 0.5)
            axis.set_yticks([0], [label], fontsize=7)
            axis.tick_params(axis="x", labelsize=6)
        if "start_curve" in prediction:
            curves = axes[2].twinx()
            curves.plot(numbers, prediction["start_curve"], color="green", linewidth=0.8, label="start")
            curves.plot(numbers, prediction["end_curve"], color="red", linewidth=0.8, label="end")
            curves.set_ylim(0, 1.05)
            curves.tick_params(labelsize=6)
            curves.legend(fontsize=6, loc="upper right")
        axes[2].set_xlabel("frame", fontsize=7)
        figure.tight_layout()
        path = out_dir / f"{episode.episode_id}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written
