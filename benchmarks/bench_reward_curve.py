"""The reward task's learning curve: held-out accuracy and macro-F1 against training steps.

Run: .venv/bin/python benchmarks/bench_reward_curve.py RUN_DIR [RUN_DIR ...] [--out PNG] [--label NAME ...]

Each RUN_DIR is a ``qvl run reward train`` run trained with ``--set train.eval_every=N`` (and
``train.eval_samples`` at least the val split's size, so every validation scores the whole split);
its ``metrics.jsonl`` holds the training loss and accuracy (every ``log_every`` steps, on the
training batches) and the validation metrics. Prints one table row per validation and draws
accuracy and macro-F1 against steps, one line per run, beside the train-batch accuracy.
"""

import argparse
import json
from pathlib import Path


def curve(run: Path) -> tuple[list[dict], list[dict]]:
    train, val = [], []
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "val/model/accuracy" in row:
            val.append(row)
        elif "loss" in row and "accuracy" in row:
            train.append(row)
    return train, val


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--label", action="append", default=[])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    labels = args.label + [r.name for r in args.runs[len(args.label):]]
    from qvl.report import pyplot

    plt = pyplot()

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120, sharey=True)
    for run, label in zip(args.runs, labels):
        train, val = curve(run)
        print(f"{label}: step | train-batch acc (mean of the last 5 logs) | val loss | val acc | val macro-F1 "
              "| MAE bins")
        for row in val:
            recent = [t["accuracy"] for t in train if t["step"] <= row["step"]][-5:]
            print(f"  {row['step']:5d} | {sum(recent) / len(recent):.3f} | {row['val/loss']:.3f} | "
                  f"{row['val/model/accuracy']:.3f} | {row['val/model/macro_f1']:.3f} | "
                  f"{row['val/model/mae_bins']:.3f}")
        steps = [r["step"] for r in val]
        line, = axes[0].plot(steps, [r["val/model/accuracy"] for r in val], marker="o", label=f"{label}: val")
        axes[0].plot([t["step"] for t in train], [t["accuracy"] for t in train], color=line.get_color(),
                     alpha=0.35, linestyle=":", label=f"{label}: train batches")
        axes[1].plot(steps, [r["val/model/macro_f1"] for r in val], marker="o", color=line.get_color(), label=label)
        majority = val[-1].get("val/baselines/majority_class/accuracy")
        if majority is not None:
            axes[0].axhline(majority, color=line.get_color(), linestyle="--", linewidth=0.8, alpha=0.6)
    axes[0].axhline(0.75, color="black", linewidth=0.8)
    axes[1].axhline(0.60, color="black", linewidth=0.8)
    axes[0].set_title("accuracy (dashed: majority class; black: goal)", fontsize=9)
    axes[1].set_title("macro-F1 on the val split (black: goal)", fontsize=9)
    for axis in axes:
        axis.set_xlabel("training step")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out)
        print(f"written: {args.out}")


if __name__ == "__main__":
    main()
