"""Evaluation of held-out episodes: the policy against two baselines, the sampler sweep and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qvl.report import EvalResult, pyplot

from qvl_vla_flow.metrics import chunk_statistics, constant_chunk, summarise

if TYPE_CHECKING:
    from qvl_vla_flow.samples import SplitInfo

# the model's metrics in eval.json (at its top level: val/mse), and the comparison table's columns
MODEL_METRICS = ("mse", "key_accuracy", "button_accuracy", "jerk", "true_jerk", "first_step", "mse_per_dim",
                 "accuracy_per_channel")
COLUMNS = [("mse", "MSE"), ("key_accuracy", "key accuracy"), ("button_accuracy", "button accuracy"),
           ("first_step/mse", "first-step MSE"), ("first_step/key_accuracy", "first-step key accuracy"),
           ("jerk", "jerk")]


def evaluate_predictions(config: Any, predictions: list[dict[str, Any]], samples: Sequence[dict[str, Any]],
                         info: SplitInfo, out_dir: Path) -> EvalResult:
    """Metrics of the default sampler, of every (sampler, steps) of the sweep, and of the baselines.

    Baselines, from the training split (``info.statistics``): ``mean_action`` predicts the mean
    action vector at every step (the best constant under MSE); ``majority_keys`` the majority state
    of every binary channel (the best constant under accuracy).
    """
    space = config.task.action_space
    targets = [samples[i] for i in range(len(predictions))]
    model = summarise((chunk_statistics(np.asarray(p["chunk"]), s["actions"], s["valid"], space)
                       for p, s in zip(predictions, targets)), space)
    statistics = info.statistics
    chunk = config.task.chunk_size
    mean = summarise((chunk_statistics(constant_chunk(statistics["mean"], chunk), s["actions"], s["valid"], space)
                      for s in targets), space)
    majority = summarise((chunk_statistics(constant_chunk(statistics["majority"], chunk), s["actions"], s["valid"],
                                           space) for s in targets), space)
    sweep: dict[str, dict[str, Any]] = {}
    for setting in predictions[0].get("sweep", {}) if predictions else {}:
        result = summarise((p["sweep"][setting] for p in predictions), space)
        sweep[setting] = {k: result[k] for k in ("mse", "key_accuracy", "button_accuracy", "jerk", "first_step")}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [str(plot_chunks(config, predictions, targets, out_dir / "chunks.png"))]
    if sweep:
        plots.append(str(plot_sweep(sweep, out_dir / "sampling_steps.png")))
    return EvalResult(
        model={key: model[key] for key in MODEL_METRICS}, model_key=None,
        baselines={name: {"mse": scored["mse"], "key_accuracy": scored["key_accuracy"],
                          "first_step": scored["first_step"]}
                   for name, scored in (("mean_action", mean), ("majority_keys", majority))},
        columns=COLUMNS,
        extra={"samples": len(predictions), "sampler": f"{config.task.sampler}/{config.task.sampling_steps}",
               "sweep": sweep, "plots": plots})


def plot_chunks(config: Any, predictions: list[dict[str, Any]], targets: list[dict[str, Any]], path: Path,
                count: int = 4) -> Path:
    """Predicted (dashed) against recorded (solid) key channels of a few chunks."""
    plt = pyplot()
    space = config.task.action_space
    # chunks with a few steps left in their episode (a last frame's chunk is one point)
    long = [i for i, t in enumerate(targets) if int(np.asarray(t["valid"]).sum()) >= 4] or list(range(len(targets)))
    picks = [long[int(j)] for j in np.linspace(0, len(long) - 1, num=min(count, len(long)))] if long else []
    fig, axes = plt.subplots(len(picks) or 1, 1, figsize=(9, 2.2 * max(len(picks), 1)), squeeze=False)
    for ax, index in zip(axes[:, 0], picks):
        predicted, target = np.asarray(predictions[index]["chunk"]), targets[index]["actions"]
        valid = int(np.asarray(targets[index]["valid"]).sum())
        for j, dim in enumerate(space.key_indices):
            colour = f"C{j}"
            ax.plot(target[:valid, dim], color=colour, marker=".", label=space.names[dim])
            ax.plot(predicted[:valid, dim], color=colour, marker=".", linestyle="--")
        ax.set_ylim(-1.3, 1.3)
        ax.set_title(f"{predictions[index]['episode']} step {predictions[index]['step']}", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1, 0].set_xlabel("chunk step (solid: recorded, dashed: predicted)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_sweep(sweep: dict[str, dict[str, Any]], path: Path) -> Path:
    """MSE and key accuracy against sampling steps, Euler and Heun."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    for method in ("euler", "heun"):
        points = sorted((int(k.split("/")[1]), v) for k, v in sweep.items() if k.startswith(method + "/"))
        if not points:
            continue
        steps = [s for s, _ in points]
        left.plot(steps, [v["mse"] for _, v in points], marker="o", label=method)
        right.plot(steps, [v["key_accuracy"] for _, v in points], marker="o", label=method)
    for ax, title in ((left, "action MSE"), (right, "key accuracy")):
        ax.set_xscale("log")
        ax.set_xlabel("sampling steps")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
