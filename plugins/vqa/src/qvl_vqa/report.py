"""Scores of VQA answers: the seed's metrics (preference accuracy, progress MAE/RMSE) and more, for
the model and for the baselines, each with a 95 % bootstrap interval.

Baselines answer the same items: always "1", random, constant progress (the training split's mean
answer) and progress from frame position alone (how far into its trajectory the clip ends, as if
every trajectory succeeded; for a pair, the clip that ends later).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qvl.report import EvalResult
from qvl.scoring import bootstrap_interval, spearman

if TYPE_CHECKING:
    from qvl.config import RunConfig
    from qvl_vqa.samples import SplitInfo

INVALID_PROGRESS = 50  # what an invalid progress answer counts as (constrained decoding gives none)
Values = list[int | None]


def _truth(prediction: dict[str, Any]) -> int:
    return int(prediction["truth"])


# -- the baselines ---------------------------------------------------------------------------------------


def baseline_answers(predictions: Sequence[dict[str, Any]], train_mean: float | None, seed: int) -> dict[str, Values]:
    """Each baseline's answer to every prediction's item (None where it has no answer for that type)."""
    rng = np.random.default_rng(seed)
    random_pick = rng.integers(1, 3, len(predictions)).tolist()
    random_progress = rng.integers(0, 101, len(predictions)).tolist()
    constant = None if train_mean is None else int(round(train_mean))
    answers: dict[str, Values] = {"always_1": [], "random": [], "constant_progress": [], "frame_position": []}
    for k, p in enumerate(predictions):
        positions = p["positions"]
        if p["sample_type"] == "progress":
            answers["always_1"].append(None)
            answers["random"].append(random_progress[k])
            answers["constant_progress"].append(constant)
            answers["frame_position"].append(int(round(100 * positions[-1])))
        else:
            answers["always_1"].append(1)
            answers["random"].append(random_pick[k])
            answers["constant_progress"].append(None)
            answers["frame_position"].append(2 if positions[-1] > positions[-2] else 1)
    return answers


# -- one system's scores -----------------------------------------------------------------------------------


def _interval(statistic: Callable[[np.ndarray], float], units: int, config: RunConfig,
              groups: Sequence[Any] | None = None) -> list[float] | None:
    """The 95 % interval; ``groups``: resample whole recordings (the rows cut from one trajectory
    are not independent, and a test split holds few trajectories)."""
    interval = bootstrap_interval(statistic, units, resamples=config.task.bootstrap, seed=config.seed,
                                  groups=groups)
    return None if interval is None else [round(v, 4) for v in interval]


def paired_scores(predictions: Sequence[dict[str, Any]], values: Values, config: RunConfig) -> dict[str, Any] | None:
    """Accuracy on the rows as generated (the seed's metric), and, where each pair was also asked in
    the other order, position-debiased accuracy (both orders averaged) and order consistency (the
    same video chosen both times)."""
    if all(v is None for v in values):
        return None
    first = [(p, v) for p, v in zip(predictions, values) if not p["swapped"]]
    correct = np.array([v == _truth(p) for p, v in first], dtype=np.float64)
    answers = [v for _, v in first]
    result: dict[str, Any] = {
        "count": len(first), "correct": int(correct.sum()), "accuracy": round(float(correct.mean()), 4),
        "accuracy_ci95": _interval(lambda idx: correct[idx].mean(), len(correct), config,
                                   [p["cluster"] for p, _ in first]),
        "answers_1_rate": round(sum(a == 1 for a in answers) / len(answers), 4),
        "invalid": sum(a is None for a in answers),
    }
    orders: dict[int, dict[bool, tuple[int | None, bool]]] = defaultdict(dict)
    clusters: dict[int, str] = {}
    for p, v in zip(predictions, values):
        orders[p["sample_index"]][p["swapped"]] = (v, v == _truth(p))
        clusters[p["sample_index"]] = p["cluster"]
    both = [o for o in orders.values() if len(o) == 2]
    pair_groups = [clusters[i] for i, o in orders.items() if len(o) == 2]
    if both:
        debiased = np.array([(o[False][1] + o[True][1]) / 2 for o in both])
        consistent = np.array([o[False][0] is not None and o[True][0] is not None and o[False][0] != o[True][0]
                               for o in both], dtype=np.float64)
        result.update({
            "pairs_in_both_orders": len(both),
            "debiased_accuracy": round(float(debiased.mean()), 4),
            "debiased_accuracy_ci95": _interval(lambda idx: debiased[idx].mean(), len(debiased), config,
                                                pair_groups),
            "order_consistency": round(float(consistent.mean()), 4),
        })
    return result


# the progress errors scored, each from the answers' errors in points
PROGRESS_ERRORS: dict[str, Callable[[np.ndarray], float]] = {
    "mae": lambda error: float(np.abs(error).mean()),
    "rmse": lambda error: float(np.sqrt((error ** 2).mean())),
}


def _progress_answers(predictions: Sequence[dict[str, Any]], values: Values) -> tuple[np.ndarray, np.ndarray]:
    """The true and the answered progress, an invalid answer counted as ``INVALID_PROGRESS``."""
    truth = np.array([_truth(p) for p in predictions], dtype=np.float64)
    guess = np.array([INVALID_PROGRESS if v is None else v for v in values], dtype=np.float64)
    return truth, guess


def progress_scores(predictions: Sequence[dict[str, Any]], values: Values, config: RunConfig) -> dict[str, Any] | None:
    """MAE and RMSE in progress points (0-100), and the mean per-trajectory Spearman correlation of
    predicted against true progress (value-order correlation; over the clips of the trajectory's
    own task: a ``different_task`` clip's truth is 0 whatever its frames)."""
    if all(v is None for v in values):
        return None
    truth, guess = _progress_answers(predictions, values)
    error = guess - truth
    groups = [p["cluster"] for p in predictions]
    by_trajectory: dict[str, list[int]] = defaultdict(list)
    for k, p in enumerate(predictions):
        if p["strategy"] != "different_task":
            by_trajectory[p["trajectory_id"]].append(k)
    correlations = []
    for rows in by_trajectory.values():
        if len(rows) >= 3 and np.ptp(truth[rows]) > 0:
            value = spearman(truth[rows], guess[rows])
            correlations.append(0.0 if value is None else value)  # a constant guess orders nothing
    rho = np.array(correlations)
    result: dict[str, Any] = {"count": len(predictions)}
    for metric, error_of in PROGRESS_ERRORS.items():
        result[metric] = round(error_of(error), 3)
        result[f"{metric}_ci95"] = _interval(lambda idx: error_of(error[idx]), len(error), config, groups)
    result.update({
        "spearman_per_trajectory": round(float(rho.mean()), 4) if len(rho) else None,
        "spearman_ci95": _interval(lambda idx: rho[idx].mean(), len(rho), config) if len(rho) else None,
        "trajectories_with_spearman": len(rho),
        "invalid": sum(v is None for v in values),
    })
    return result


def scores(predictions: Sequence[dict[str, Any]], values: Values, config: RunConfig) -> dict[str, Any]:
    """A system's scores by sample type (types it gives no answer for are left out)."""
    result: dict[str, Any] = {}
    for kind in ("preference", "similarity", "progress"):
        rows = [k for k, p in enumerate(predictions) if p["sample_type"] == kind]
        if not rows:
            continue
        part = [predictions[k] for k in rows]
        answers = [values[k] for k in rows]
        scored = progress_scores(part, answers, config) if kind == "progress" else paired_scores(part, answers, config)
        if scored is not None:
            result[kind] = scored
    return result


def breakdown(predictions: Sequence[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    """The model's accuracy (paired types, rows as generated) and MAE (progress) per ``key`` value."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for p in predictions:
        if not p["swapped"]:
            groups[(p[key], p["sample_type"])].append(p)
    result: dict[str, dict[str, Any]] = defaultdict(dict)
    for (name, kind), rows in sorted(groups.items()):
        if kind == "progress":
            errors = [abs((INVALID_PROGRESS if p["value"] is None else p["value"]) - _truth(p)) for p in rows]
            result[name][kind] = {"count": len(rows), "mae": round(sum(errors) / len(rows), 3)}
        else:
            right = sum(p["value"] == _truth(p) for p in rows)
            result[name][kind] = {"count": len(rows), "accuracy": round(right / len(rows), 4)}
    return dict(result)


# -- the report ------------------------------------------------------------------------------------------

# (sample type, metric, better) compared between the model and each baseline
COMPARED = [("preference", "accuracy", "higher"), ("preference", "debiased_accuracy", "higher"),
            ("similarity", "accuracy", "higher"), ("similarity", "debiased_accuracy", "higher"),
            ("progress", "mae", "lower"), ("progress", "rmse", "lower"),
            ("progress", "spearman_per_trajectory", "higher")]


# baselines that get a metric right by construction: within one trajectory, target progress grows
# with the frame number (linear in time), so ordering clips by frame position is the truth's order
ORACLES = {"spearman_per_trajectory": ("frame_position",)}


def _ci_key(metric: str) -> str:
    return "spearman_ci95" if metric == "spearman_per_trajectory" else f"{metric}_ci95"


def comparison(model: dict[str, Any], baselines: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """For each metric, whether the model's 95 % interval lies entirely on the better side of each
    baseline's (no overlap)."""
    result: dict[str, Any] = {}
    for kind, metric, better in COMPARED:
        ours = model.get(kind, {}).get(_ci_key(metric))
        if ours is None:
            continue
        verdicts = {}
        for name, scored in baselines.items():
            if name in ORACLES.get(metric, ()):
                continue
            theirs = scored.get(kind, {}).get(_ci_key(metric))
            if theirs is not None:
                verdicts[name] = ours[0] > theirs[1] if better == "higher" else ours[1] < theirs[0]
        if verdicts:
            result[f"{kind}/{metric}"] = {"beats": verdicts, "beats_all": all(verdicts.values())}
    return result


def paired_differences(predictions: Sequence[dict[str, Any]], values: Values,
                       baseline_values: dict[str, Values], config: RunConfig) -> dict[str, Any]:
    """Progress MAE and RMSE, the model's minus each baseline's, with a 95 % interval from the same
    resampled trajectories for both (a paired bootstrap: both answered the same questions, so the
    interval of the difference is narrower than the two intervals side by side). ``better``: the
    whole interval is below 0."""
    rows = [k for k, p in enumerate(predictions) if p["sample_type"] == "progress"]
    if not rows:
        return {}
    part = [predictions[k] for k in rows]
    groups = [p["cluster"] for p in part]

    def errors(answers: Values) -> np.ndarray:
        truth, guess = _progress_answers(part, [answers[k] for k in rows])
        return guess - truth

    ours = errors(values)
    result: dict[str, Any] = {}
    for name, answers in baseline_values.items():
        if all(answers[k] is None for k in rows):
            continue
        theirs = errors(answers)
        for metric, error_of in PROGRESS_ERRORS.items():
            interval = _interval(lambda idx: error_of(ours[idx]) - error_of(theirs[idx]), len(rows), config, groups)
            result.setdefault(f"progress/{metric}", {})[name] = {
                "difference": round(error_of(ours) - error_of(theirs), 3), "difference_ci95": interval,
                "better": interval is not None and interval[1] < 0}
    return result


# the comparison table's columns: (sample type, metric), those some system has a number for
COLUMNS = [("preference", "accuracy"), ("preference", "debiased_accuracy"), ("similarity", "debiased_accuracy"),
           ("progress", "mae"), ("progress", "rmse"), ("progress", "spearman_per_trajectory")]
GREEDY = "greedy_answers"


def evaluate_predictions(config: RunConfig, predictions: list[dict[str, Any]], info: SplitInfo,
                         out_dir: Path) -> EvalResult:
    """The model's and the baselines' scores by sample type with their 95 % intervals (``eval.json``
    keeps the model's at its top level), with a readable ``report`` that ``qvl run vqa eval`` prints;
    with ``eval.save_vis`` the progress curves and confusion matrices as PNGs."""
    model_values: Values = [p["value"] for p in predictions]
    train_mean = info.train_progress_mean
    baseline_values = baseline_answers(predictions, train_mean, config.seed)
    baselines = {name: scores(predictions, values, config) for name, values in baseline_values.items()}
    model = scores(predictions, model_values, config)
    # answered from the distribution (task.progress_answer): the greedy answers, for comparison
    variants = {}
    if any("greedy_value" in p for p in predictions):
        variants[GREEDY] = scores(predictions, [p.get("greedy_value", p["value"]) for p in predictions], config)
    kinds: dict[str, int] = defaultdict(int)
    for p in predictions:
        if not p["swapped"]:
            kinds[p["sample_type"]] += 1
    present = [(k, m) for k, m in COLUMNS if k in model or any(k in b for b in baselines.values())]
    intervals = {name: {f"{kind}/{metric}": tuple(scored[kind][_ci_key(metric)]) for kind, metric in present
                        if scored.get(kind, {}).get(_ci_key(metric))}
                 for name, scored in {"model": model, **variants, **baselines}.items()}
    result = EvalResult(
        model=model, model_key=None, variants=variants, baselines=baselines,
        intervals=intervals, intervals_in_json=False,  # eval.json has them as the metrics' *_ci95
        paired_differences=paired_differences(predictions, model_values, baseline_values, config),
        columns=[(f"{kind}/{metric}", f"{kind} {metric}") for kind, metric in present],
        titles={GREEDY: "model, greedy answers"},
        extra={
            "dataset_path": str(info.dataset_dir), "split": info.split,
            "total_samples": sum(kinds.values()), "sample_types": dict(kinds), "asked": len(predictions),
            "invalid_answers": sum(not p["valid"] for p in predictions),
            "by_task": breakdown(predictions, "task"), "by_strategy": breakdown(predictions, "strategy"),
            "progress_answer": config.task.progress_answer,
            "train_mean_progress": None if train_mean is None else round(train_mean, 3),
            "comparison": comparison(model, baselines),
        })
    result.extra["report"] = report_text(result)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if config.eval.save_vis:
        from qvl_vqa.plots import plot_confusion, plot_progress

        plot_progress(predictions, out_dir / "progress_curves.png")
        plot_confusion(predictions, out_dir / "confusion.png")
    return result


def report_text(result: EvalResult) -> str:
    """What the terminal shows: counts, the model-and-baselines table, and the verdicts."""
    extra = result.extra
    lines = [f"{extra['total_samples']} samples of split {extra['split']} ({extra['sample_types']}), "
             f"{extra['asked']} questions asked, {extra['invalid_answers']} invalid answers",
             "", result.table().rstrip("\n"), ""]
    for metric, verdict in extra["comparison"].items():
        beaten = [name for name, ok in verdict["beats"].items() if ok]
        lines.append(f"{metric}: the model's 95 % interval clears {len(beaten)} of {len(verdict['beats'])} "
                     f"baselines ({', '.join(beaten) or 'none'})")
    for metric, against in (result.paired_differences or {}).items():
        lines.append(f"{metric}, model minus baseline on the same resampled trajectories: " + ", ".join(
            f"{name} {d['difference']:+.1f} [{d['difference_ci95'][0]:+.1f}, {d['difference_ci95'][1]:+.1f}]"
            if d["difference_ci95"] else f"{name} {d['difference']:+.1f}" for name, d in against.items()))
    return "\n".join(lines)
