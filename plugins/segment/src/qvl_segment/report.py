"""Scores of a segment evaluation: the model and three baselines in one table.

Detection (mAP at tIoU 0.3/0.5/0.7, recall@1x, mean tIoU) and boundary MAE are class-agnostic;
frame-wise segmentation (accuracy, Edit, F1@{10,25,50}) compares skill labels per frame. The
baselines place segments without a model, so for the frame-wise metrics they label every segment
with the most frequent training skill. All in the episodes' own frame numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qvl.report import EvalResult, majority_class

from qvl_segment.answers import final_schema
from qvl_segment.baselines import frame_difference_segments, most_frequent_count, uniform_split
from qvl_segment.episodes import Episode, load_frames, sample_frame_numbers
from qvl_segment.metrics import (boundary_mae, count_accuracy, detection_metrics, frame_labels, match_segments,
                                  segmentation_metrics)

UNKNOWN_SKILL = "unknown"  # a segment the heads placed but no text named (mode "heatmap")
SHOWN = ("mAP@0.3", "mAP@0.5", "mAP@0.7", "mAP", "recall@1x@0.5", "mean_tiou", "boundary_mae", "k_accuracy",
         "accuracy", "edit", "F1@10", "F1@25", "F1@50")


def truths_of(episode: Episode) -> list[tuple[int, int]]:
    return [(s.start_frame, s.end_frame) for s in episode.segments]


def score_segments(predicted: Sequence[Sequence[dict[str, Any]]], episodes: Sequence[Episode]) -> dict[str, Any]:
    """Every metric of predicted segments (``start_frame``, ``end_frame``, ``score``, ``skill``)."""
    boxes = [[(int(s["start_frame"]), int(s["end_frame"]), float(s.get("score", 1.0))) for s in rows]
             for rows in predicted]
    truths = [truths_of(e) for e in episodes]
    scores: dict[str, Any] = detection_metrics(boxes, truths)
    scores["boundary_mae"] = boundary_mae([[(a, b) for a, b, _ in rows] for rows in boxes], truths,
                                          [e.num_frames for e in episodes])
    scores["k_accuracy"] = count_accuracy([len(rows) for rows in predicted], [len(t) for t in truths])
    predicted_labels = [frame_labels([(int(s["start_frame"]), int(s["end_frame"]), s.get("skill") or UNKNOWN_SKILL)
                                      for s in rows], e.num_frames) for rows, e in zip(predicted, episodes)]
    true_labels = [frame_labels([(s.start_frame, s.end_frame, s.skill) for s in e.segments], e.num_frames)
                   for e in episodes]
    scores.update(segmentation_metrics(predicted_labels, true_labels))
    return scores


def text_scores(predicted: Sequence[Sequence[dict[str, Any]]], episodes: Sequence[Episode]) -> dict[str, Any]:
    """Skill accuracy and action-text exact match over segments matched to a true one (tIoU > 0)."""
    skill_hits = text_hits = matched = 0
    for rows, episode in zip(predicted, episodes):
        pairs = match_segments([(int(r["start_frame"]), int(r["end_frame"])) for r in rows], truths_of(episode))
        for p, t, _ in pairs:
            matched += 1
            skill_hits += rows[p].get("skill") == episode.segments[t].skill
            text_hits += (rows[p].get("action_text") or "").strip() == episode.segments[t].action_text.strip()
    nan = float("nan")
    return {"skill_accuracy": skill_hits / matched if matched else nan,
            "action_text_exact": text_hits / matched if matched else nan, "text_matched": matched}


def schema_validity(predictions: Sequence[dict[str, Any]], episodes: Sequence[Episode], skills: Sequence[str],
                    k_max: int) -> float:
    """Share of answers that parsed and, frames filled, are valid against the final schema."""
    import jsonschema

    valid = 0
    for prediction, episode in zip(predictions, episodes):
        if not prediction.get("valid"):
            continue
        rows = [{key: row[key] for key in ("start_frame", "end_frame", "action_text", "skill")}
                for row in prediction["segments"]]
        try:
            jsonschema.validate({"segments": rows}, final_schema(skills, episode.num_frames, max(k_max, len(rows))))
        except jsonschema.ValidationError:
            continue
        valid += 1
    return valid / len(predictions) if predictions else float("nan")


def baseline_predictions(episodes: Sequence[Episode], train_counts: Sequence[int], train_skills: Sequence[str],
                         num_frames: int, image_size: Sequence[int]) -> dict[str, list[list[dict[str, Any]]]]:
    """Segments of the three baselines for every episode (``uniform_true_k`` is an oracle: it knows K)."""
    common_k = most_frequent_count(train_counts) if train_counts else 0
    common_skill = majority_class(train_skills) if train_skills else UNKNOWN_SKILL

    def rows(segments: Sequence[tuple[int, int, float]]) -> list[dict[str, Any]]:
        return [{"start_frame": int(a), "end_frame": int(b), "score": float(s), "skill": common_skill}
                for a, b, s in segments]

    result: dict[str, list[list[dict[str, Any]]]] = {"uniform_true_k": [], "uniform_common_k": [],
                                                     "frame_difference": []}
    for episode in episodes:
        result["uniform_true_k"].append(rows(uniform_split(episode.num_frames, len(episode.segments))))
        result["uniform_common_k"].append(rows(uniform_split(episode.num_frames, min(common_k, episode.num_frames))))
        numbers = sample_frame_numbers(episode.num_frames, num_frames)
        frames = np.stack([np.asarray(image) for image in load_frames(episode, numbers, tuple(image_size))])
        result["frame_difference"].append(rows(frame_difference_segments(frames, numbers)))
    return result


_BASELINES: dict[tuple, dict[str, list[list[dict[str, Any]]]]] = {}


def evaluate_predictions(config: Any, predictions: Sequence[dict[str, Any]], episodes: Sequence[Episode],
                         train_episodes: Sequence[Episode], skills: Sequence[str], out_dir: Path) -> EvalResult:
    """The model's and the baselines' scores; ``eval.json`` keeps the model's metrics at its top level
    (``val/mAP@0.5``), with a readable ``report``."""
    task = config.task
    predicted = [p["segments"] for p in predictions]
    model: dict[str, Any] = score_segments(predicted, episodes)
    if task.mode != "heatmap":
        model.update(text_scores(predicted, episodes))
        model["json_valid"] = schema_validity(predictions, episodes, skills, task.k_max)
    train_counts = [len(e.segments) for e in train_episodes]
    train_skills = [s.skill for e in train_episodes for s in e.segments]
    key = (tuple(e.source for e in episodes), tuple(train_counts), tuple(train_skills), task.num_frames,
           tuple(task.image_size))
    if key not in _BASELINES:  # validation asks again every eval_every steps; the baselines do not change
        _BASELINES.clear()
        _BASELINES[key] = baseline_predictions(episodes, train_counts, train_skills, task.num_frames, task.image_size)
    baselines = {name: score_segments(rows, episodes) for name, rows in _BASELINES[key].items()}
    oracles = ["uniform_true_k"]
    result = EvalResult(model=model, baselines=baselines, model_key=None, columns=[(k, k) for k in SHOWN],
                        titles={name: f"{name} (oracle K)" for name in oracles},
                        extra={"episodes": len(episodes), "mode": task.mode, "oracles": oracles})
    result.extra["report"] = report_text(result)
    return result


def report_text(result: EvalResult) -> str:
    """What ``qvl run segment eval`` prints: the model-and-baselines table (the oracle marked), then
    the text scores."""
    lines = [f"segment eval on {result.extra['episodes']} episodes (mode {result.extra['mode']})", "",
             result.table().rstrip("\n")]
    shown = {key: result.model[key] for key in ("json_valid", "skill_accuracy", "action_text_exact")
             if key in result.model}
    if shown:
        lines += ["", ", ".join(f"{key} {value:.3f}" for key, value in shown.items())]
    return "\n".join(lines)
