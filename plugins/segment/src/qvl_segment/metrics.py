"""Segmentation metrics in original frame numbers: detection (mAP, recall, tIoU), frame-wise
(accuracy, edit, F1@k), boundary error and count accuracy.

Segments are inclusive ``(start, end)`` frame numbers (length ``end - start + 1``); scored
predictions are ``(start, end, score)``. Detection follows ActivityNet's evaluation (as ActionFormer
uses it), frame-wise scores follow MS-TCN's ``eval.py``, so numbers compare with published ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BACKGROUND = "background"


def t_iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Temporal IoU of two inclusive integer segments (only their first two items are read)."""
    intersection = max(0, min(a[1], b[1]) - max(a[0], b[0]) + 1)
    union = (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - intersection
    return intersection / union if union > 0 else 0.0


def _interpolated_prec_rec(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the monotone precision envelope; ActivityNet ``interpolated_prec_rec``."""
    envelope = np.hstack([[0.0], precision, [0.0]])
    recall_steps = np.hstack([[0.0], recall, [1.0]])
    for index in range(len(envelope) - 2, -1, -1):
        envelope[index] = max(envelope[index], envelope[index + 1])
    changes = np.where(recall_steps[1:] != recall_steps[:-1])[0] + 1
    return float(np.sum((recall_steps[changes] - recall_steps[changes - 1]) * envelope[changes]))


def average_precision(
    predictions: Sequence[Sequence[tuple[int, int, float]]],
    truths: Sequence[Sequence[tuple[int, int]]],
    threshold: float,
) -> float:
    """Class-agnostic detection AP at one tIoU threshold over a set of episodes.

    Follows ActivityNet's ``compute_average_precision_detection`` (ActionFormer's copy): predictions of
    all episodes sorted by score descending (stable here, so ties keep their input order); each is a
    true positive when the unmatched truth of its episode with the highest tIoU reaches ``threshold``,
    otherwise a false positive; AP integrates the interpolated precision/recall curve. NaN when there
    are no truths at all, since recall is undefined then.
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} episodes of predictions vs {len(truths)} of truths")
    positives = sum(len(episode) for episode in truths)
    if positives == 0:
        return float("nan")
    flat = [(episode, segment) for episode, segments in enumerate(predictions) for segment in segments]
    if not flat:
        return 0.0
    order = np.argsort([-segment[2] for _, segment in flat], kind="stable")
    matched = [np.zeros(len(episode), dtype=bool) for episode in truths]
    is_true_positive = np.zeros(len(flat), dtype=bool)
    for rank, flat_index in enumerate(order):
        episode, segment = flat[flat_index]
        overlaps = np.array([t_iou(segment, truth) for truth in truths[episode]])
        for truth_index in np.argsort(-overlaps, kind="stable"):
            if overlaps[truth_index] < threshold:
                break
            if matched[episode][truth_index]:
                continue
            matched[episode][truth_index] = True
            is_true_positive[rank] = True
            break
    true_positives = np.cumsum(is_true_positive).astype(np.float64)
    false_positives = np.cumsum(~is_true_positive).astype(np.float64)
    recall = true_positives / positives
    precision = true_positives / (true_positives + false_positives)
    return _interpolated_prec_rec(precision, recall)


def match_segments(pred: Sequence[Sequence[int]], truth: Sequence[Sequence[int]]) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(pred index, truth index, tIoU)``, greedily by highest tIoU, tIoU > 0.

    Greedy rather than optimal assignment because it is what a reader expects of "the best overlap"
    and is deterministic (ties: lower prediction index, then lower truth index). In taking order.
    """
    pairs = [(t_iou(p, t), p_index, t_index)
             for p_index, p in enumerate(pred) for t_index, t in enumerate(truth)]
    pairs = [pair for pair in pairs if pair[0] > 0]
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    used_pred: set[int] = set()
    used_truth: set[int] = set()
    matches: list[tuple[int, int, float]] = []
    for overlap, p_index, t_index in pairs:
        if p_index in used_pred or t_index in used_truth:
            continue
        used_pred.add(p_index)
        used_truth.add(t_index)
        matches.append((p_index, t_index, overlap))
    return matches


def detection_metrics(
    predictions: Sequence[Sequence[tuple[int, int, float]]],
    truths: Sequence[Sequence[tuple[int, int]]],
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
) -> dict[str, float]:
    """Detection summary over episodes.

    ``mAP@t`` per threshold and ``mAP`` their mean; ``recall@1x@0.5``: per episode the top-N
    predictions by score (N = its number of truths), matched one-to-one at tIoU >= 0.5, recall over all
    truths; ``mean_tiou``: mean tIoU of the pairs :func:`match_segments` finds (tIoU > 0) over all
    episodes, NaN if none; ``matched``: how many such pairs.
    """
    results: dict[str, float] = {}
    for threshold in thresholds:
        results[f"mAP@{threshold:g}"] = average_precision(predictions, truths, threshold)
    results["mAP"] = float(np.mean([results[f"mAP@{t:g}"] for t in thresholds])) if thresholds else float("nan")

    recalled, positives, overlaps = 0, 0, []
    for predicted, true in zip(predictions, truths, strict=True):
        positives += len(true)
        order = np.argsort([-segment[2] for segment in predicted], kind="stable")
        top = [predicted[index] for index in order[:len(true)]]
        # greedy takes pairs in descending tIoU, so the pairs >= 0.5 are the ones a 0.5-only greedy takes
        recalled += sum(1 for _, _, overlap in match_segments(top, true) if overlap >= 0.5)
        overlaps += [overlap for _, _, overlap in match_segments(predicted, true)]
    results["recall@1x@0.5"] = recalled / positives if positives else float("nan")
    results["mean_tiou"] = float(np.mean(overlaps)) if overlaps else float("nan")
    results["matched"] = len(overlaps)
    return results


def frame_labels(
    segments_with_labels: Sequence[tuple[int, int, str]], num_frames: int, background: str = BACKGROUND
) -> list[str]:
    """Per-frame labels of an episode: each segment's label on its frames, ``background`` elsewhere.

    Segments are clipped to the episode; where segments overlap the later one wins.
    """
    labels = [background] * num_frames
    for start, end, label in segments_with_labels:
        for frame in range(max(start, 0), min(end, num_frames - 1) + 1):
            labels[frame] = label
    return labels


def _label_runs(labels: Sequence[str], background: str) -> tuple[list[str], list[int], list[int]]:
    """Non-background runs as (labels, starts, exclusive ends); MS-TCN ``get_labels_start_end_time``.

    Unlike MS-TCN, the last run ends at ``len(labels)`` (MS-TCN stops it one frame short), so every run
    has its true length.
    """
    names: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    for index, label in enumerate(labels):
        if index > 0 and label == labels[index - 1]:
            continue
        if index > 0 and labels[index - 1] != background:
            ends.append(index)
        if label != background:
            names.append(label)
            starts.append(index)
    if labels and labels[-1] != background:
        ends.append(len(labels))
    return names, starts, ends


def _levenshtein(predicted: Sequence[str], true: Sequence[str]) -> int:
    """Edit distance with unit insert/delete/substitute; MS-TCN ``levenstein``."""
    distances = np.zeros((len(predicted) + 1, len(true) + 1), dtype=np.int64)
    distances[:, 0] = np.arange(len(predicted) + 1)
    distances[0, :] = np.arange(len(true) + 1)
    for i in range(1, len(predicted) + 1):
        for j in range(1, len(true) + 1):
            if predicted[i - 1] == true[j - 1]:
                distances[i, j] = distances[i - 1, j - 1]
            else:
                distances[i, j] = 1 + min(distances[i - 1, j], distances[i, j - 1], distances[i - 1, j - 1])
    return int(distances[-1, -1])


def _edit_score(predicted: Sequence[str], true: Sequence[str], background: str) -> float:
    """MS-TCN ``edit_score`` (normalised): 100 * (1 - distance / longer length); both empty: 100."""
    predicted_names, _, _ = _label_runs(predicted, background)
    true_names, _, _ = _label_runs(true, background)
    longest = max(len(predicted_names), len(true_names))
    if longest == 0:
        return 100.0
    return 100.0 * (1.0 - _levenshtein(predicted_names, true_names) / longest)


def _f_score_counts(
    predicted: Sequence[str], true: Sequence[str], overlap: float, background: str
) -> tuple[int, int, int]:
    """(tp, fp, fn) of one episode; MS-TCN ``f_score``: each predicted run is a hit when its best
    same-label true run (IoU on exclusive-end runs) reaches ``overlap`` and is not hit yet."""
    p_names, p_starts, p_ends = _label_runs(predicted, background)
    y_names, y_starts, y_ends = _label_runs(true, background)
    y_starts_arr, y_ends_arr = np.array(y_starts), np.array(y_ends)
    hits = np.zeros(len(y_names), dtype=bool)
    true_positives = false_positives = 0
    for name, p_start, p_end in zip(p_names, p_starts, p_ends, strict=True):
        if not y_names:
            false_positives += 1
            continue
        intersection = np.minimum(p_end, y_ends_arr) - np.maximum(p_start, y_starts_arr)
        union = np.maximum(p_end, y_ends_arr) - np.minimum(p_start, y_starts_arr)
        same_label = np.array([name == y_name for y_name in y_names])
        iou = intersection / union * same_label
        best = int(iou.argmax())
        if iou[best] >= overlap and not hits[best]:
            true_positives += 1
            hits[best] = True
        else:
            false_positives += 1
    return true_positives, false_positives, int(len(y_names) - hits.sum())


def segmentation_metrics(
    predicted_labels: Sequence[Sequence[str]],
    true_labels: Sequence[Sequence[str]],
    background: str = BACKGROUND,
) -> dict[str, float]:
    """Frame-wise metrics over episodes, all in percent as MS-TCN reports them.

    ``accuracy``: correct frames over all frames of all episodes, background included. ``edit``: the
    segmental edit score per episode (background runs excluded), averaged over episodes. ``F1@10``,
    ``F1@25``, ``F1@50``: MS-TCN's F1 at IoU 0.10/0.25/0.50 with labels required to match, background
    excluded, tp/fp/fn summed over episodes before F1 (0 when nothing is hit; NaN when there are no
    segments on either side). Every value is NaN without frames/episodes.
    """
    if len(predicted_labels) != len(true_labels):
        raise ValueError(f"{len(predicted_labels)} predicted episodes vs {len(true_labels)} true")
    correct = total = 0
    edits: list[float] = []
    overlaps = {"F1@10": 0.10, "F1@25": 0.25, "F1@50": 0.50}
    counts = {name: [0, 0, 0] for name in overlaps}
    for episode, (predicted, true) in enumerate(zip(predicted_labels, true_labels, strict=True)):
        if len(predicted) != len(true):
            raise ValueError(f"episode {episode}: {len(predicted)} predicted frames vs {len(true)} true")
        correct += sum(p == t for p, t in zip(predicted, true, strict=True))
        total += len(true)
        edits.append(_edit_score(predicted, true, background))
        for name, overlap in overlaps.items():
            for slot, value in enumerate(_f_score_counts(predicted, true, overlap, background)):
                counts[name][slot] += value
    results = {"accuracy": 100.0 * correct / total if total else float("nan"),
               "edit": float(np.mean(edits)) if edits else float("nan")}
    for name, (true_positives, false_positives, false_negatives) in counts.items():
        if true_positives + false_positives + false_negatives == 0:
            results[name] = float("nan")
        elif true_positives == 0:
            results[name] = 0.0
        else:
            precision = true_positives / (true_positives + false_positives)
            recall = true_positives / (true_positives + false_negatives)
            results[name] = 100.0 * 2.0 * precision * recall / (precision + recall)
    return results


def boundary_mae(
    predictions: Sequence[Sequence[Sequence[int]]],
    truths: Sequence[Sequence[Sequence[int]]],
    num_frames: Sequence[int],
) -> float:
    """Symmetric (Chamfer) mean boundary distance in frames.

    Starts are compared with starts and ends with ends. Per episode and kind: for each true boundary
    the distance to the nearest predicted one, and for each predicted boundary the distance to the
    nearest true one; all those distances of all episodes are averaged. When only one side of an
    episode has segments, each of its boundaries counts that episode's ``num_frames``; an episode with
    none on either side contributes nothing; NaN when nothing contributes. Being two-sided, it punishes
    both missed segments (true boundaries far from any prediction) and extra ones (predicted boundaries
    far from any truth), which a truth-to-prediction nearest distance alone would not.
    """
    if not len(predictions) == len(truths) == len(num_frames):
        raise ValueError("predictions, truths and num_frames must cover the same episodes")
    distances: list[float] = []
    for predicted, true, frames in zip(predictions, truths, num_frames, strict=True):
        for side in (0, 1):  # 0: starts, 1: ends
            predicted_bounds = np.array([segment[side] for segment in predicted], dtype=np.float64)
            true_bounds = np.array([segment[side] for segment in true], dtype=np.float64)
            if len(predicted_bounds) and len(true_bounds):
                gaps = np.abs(predicted_bounds[:, None] - true_bounds[None, :])
                distances += gaps.min(axis=0).tolist() + gaps.min(axis=1).tolist()
            else:
                distances += [float(frames)] * (len(predicted_bounds) + len(true_bounds))
    return float(np.mean(distances)) if distances else float("nan")


def count_accuracy(pred_k: Sequence[int], true_k: Sequence[int]) -> float:
    """Fraction of episodes whose predicted segment count is exactly right; NaN without episodes."""
    if len(pred_k) != len(true_k):
        raise ValueError(f"{len(pred_k)} predicted counts vs {len(true_k)} true")
    if not true_k:
        return float("nan")
    return sum(int(p) == int(t) for p, t in zip(pred_k, true_k, strict=True)) / len(true_k)
