"""What eval and predict write: classification metrics, confusion matrix, reward curves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qvl.data import write_json
from qvl.report import EvalResult, accuracy, confusion_chart, majority_class, pyplot
from qvl.scoring import spearman

from qvl_reward.frames import FrameRef

# the comparison table's columns (comparison.md, comparison.png)
COLUMNS = [("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("mae_bins", "MAE (bins)"),
           ("spearman_per_episode", "Spearman per episode")]


def classification_metrics(truth: list[int], predicted: list[int], classes: int) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (rows: truth).

    Twenty lines here instead of a scikit-learn dependency for the whole plugin.
    """
    matrix = [[0] * classes for _ in range(classes)]
    for t, p in zip(truth, predicted):
        matrix[t][p] += 1
    per_class = {}
    f1s = []
    for c in range(classes):
        tp = matrix[c][c]
        predicted_c = sum(matrix[r][c] for r in range(classes))
        actual_c = sum(matrix[c])
        precision = tp / predicted_c if predicted_c else 0.0
        recall = tp / actual_c if actual_c else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[str(c)] = {"precision": precision, "recall": recall, "f1": f1, "support": actual_c}
        if actual_c or predicted_c:  # classes absent from both are left out of the macro average
            f1s.append(f1)
    return {
        "samples": len(truth),
        "accuracy": accuracy(truth, predicted),
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix,
    }


def ordinal_metrics(truth: list[int], predicted: list[int], episodes: list[int]) -> dict[str, Any]:
    """Reward bins are ordered: mean absolute error in bins, and how well each episode's predicted
    curve follows the true one (Spearman per episode, averaged over the episodes where it is defined)."""
    by_episode: dict[int, tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for t, p, e in zip(truth, predicted, episodes):
        by_episode[e][0].append(t)
        by_episode[e][1].append(p)
    correlations = [spearman(t, p) for t, p in by_episode.values() if len(t) > 1]
    defined = [c for c in correlations if c is not None]
    return {
        "mae_bins": sum(abs(t - p) for t, p in zip(truth, predicted)) / len(truth) if truth else 0.0,
        "spearman_per_episode": sum(defined) / len(defined) if defined else None,
        "episodes_with_spearman": len(defined),
    }


def evaluate_predictions(config: Any, predictions: list[dict], refs: Sequence[FrameRef], out_dir: Path) -> EvalResult:
    """The model against the training split's majority class; ``refs``: the evaluated frames'
    references, ``refs[i]`` the truth of ``predictions[i]``. Writes the confusion matrix as JSON and PNG."""
    from qvl_reward.data import num_classes, split_frames

    truth = [ref.label for ref in refs]
    predicted = [p["class"] for p in predictions]
    classes = num_classes(config)
    episodes = [p.get("episode") for p in predictions]
    model = {**classification_metrics(truth, predicted, classes), **ordinal_metrics(truth, predicted, episodes)}
    majority = majority_class(split_frames(config, "train").labels)
    baseline = {**classification_metrics(truth, [majority] * len(truth), classes),
                **ordinal_metrics(truth, [majority] * len(truth), episodes)}
    write_json(out_dir / "confusion_matrix.json",
               {"rows": "true class", "columns": "predicted class", "matrix": model["confusion_matrix"]}, indent=2)
    confusion_chart(model["confusion_matrix"], out_dir / "confusion_matrix.png",
                    f"reward: accuracy {model['accuracy']:.2f}, macro-F1 {model['macro_f1']:.2f} "
                    f"(majority {baseline['accuracy']:.2f})", xlabel="predicted reward bin", ylabel="true reward bin")
    return EvalResult(model=model, baselines={"majority_class": {
        "class": majority, "accuracy": baseline["accuracy"], "macro_f1": baseline["macro_f1"],
        "mae_bins": baseline["mae_bins"]}}, extra={"classes": classes}, columns=COLUMNS,
        titles={"majority_class": "majority class"})


def plot_curve(episode: int, task: str, rows: list[dict], out: Path) -> None:
    plt = pyplot()
    times = [r["timestamp"] for r in rows]
    expected = [sum(i * p for i, p in enumerate(r["probabilities"])) for r in rows]
    figure, axis = plt.subplots(figsize=(7, 3.2))
    axis.plot(times, expected, color="#d62728", label="expected bin (sum of p x bin)")
    axis.step(times, [r["class"] for r in rows], where="mid", color="#1f77b4", alpha=0.7, label="predicted bin")
    if all(r.get("label") is not None for r in rows):
        axis.step(times, [r["label"] for r in rows], where="mid", color="black", linestyle="--", label="true bin")
    classes = len(rows[0]["probabilities"])
    axis.set_ylim(-0.2, classes - 0.8)
    axis.set_yticks(range(classes))
    axis.set_xlabel("time (s)")
    axis.set_ylabel("reward bin")
    axis.set_title(f"episode {episode}: {task}", fontsize=9)
    axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)


def write_reward_curves(config: Any, predictions: list[dict], refs: Sequence[FrameRef], out_dir: Path
                        ) -> dict[str, Any]:
    """``rewards.json`` (per episode: frame, time, class, probabilities, true label where known) and a
    PNG curve per episode; ``refs[i]``: the frame ``predictions[i]`` was made on."""
    episodes: dict[int, list[dict]] = defaultdict(list)
    tasks: dict[int, str] = {}
    for prediction, ref in zip(predictions, refs):
        row = {"frame": prediction["frame"], "timestamp": round(prediction["timestamp"], 4),
               "class": prediction["class"], "probabilities": prediction["probabilities"], "label": ref.label}
        tasks[prediction["episode"]] = ref.task
        episodes[prediction["episode"]].append(row)
    document = {"every_k_frames": config.task.predict_every,
                "episodes": [{"episode": e, "task": tasks.get(e, ""), "frames": rows}
                             for e, rows in sorted(episodes.items())]}
    write_json(out_dir / "rewards.json", document, indent=2)
    for episode, rows in episodes.items():
        plot_curve(episode, tasks.get(episode, ""), rows, out_dir / f"reward_curve_episode_{episode:06d}.png")
    return {"episodes": len(episodes), "frames": len(predictions), "rewards": str(out_dir / "rewards.json")}
