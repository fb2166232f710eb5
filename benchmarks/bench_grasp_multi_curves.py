"""Loss and validation-success curves of grasp runs on multi-object scenes, on one PNG.

    python benchmarks/bench_grasp_multi_curves.py "800 scenes=R2" "3,200 scenes=R3" \
        --out plugins/grasp/docs/multi_object_curves.png

Each argument is ``label=run dir`` of a ``qvl run grasp train`` with validation (``train.eval_every``);
the oracle baselines' lines come from the last run's validation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="label=run directory")
    parser.add_argument("--out", type=Path, default=Path("multi_object_curves.png"))
    args = parser.parse_args()

    from qvl.report import pyplot

    plt = pyplot()

    figure, (losses, success) = plt.subplots(1, 2, figsize=(10, 3.8))
    validated = []
    for index, spec in enumerate(args.runs):
        label, _, folder = spec.partition("=")
        rows = [json.loads(line) for line in (Path(folder) / "metrics.jsonl").read_text().splitlines()]
        train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
        validated = [r for r in rows if "val/loss" in r]
        colour = f"C{index}"
        losses.plot(*zip(*train), color=colour, alpha=0.5, label=f"{label}: train")
        losses.plot([r["step"] for r in validated], [r["val/loss"] for r in validated], "o-", color=colour,
                    label=f"{label}: val")
        success.plot([r["step"] for r in validated], [r["val/model/success_rate"] for r in validated], "o-",
                     color=colour, label=f"model, {label}")
        steps = [r["step"] for r in validated]
        print(f"{label}: val loss {[round(r['val/loss'], 3) for r in validated]}, success "
              f"{[round(r['val/model/success_rate'], 3) for r in validated]} at steps {steps}")
    last = validated[-1]
    success.axhline(last["val/baselines/pca/success_rate"], color="grey", ls="--", label="PCA (oracle mask)")
    success.axhline(last["val/baselines/largest_object/success_rate"], color="grey", ls=":", label="largest object")
    losses.set(title="loss (answer tokens)", xlabel="step", ylim=(0.9, 1.8))
    success.set(title="val success (IoU > 0.25, angle < 30°)", xlabel="step", ylim=(-0.02, 0.5))
    losses.legend(fontsize=8)
    success.legend(fontsize=8)
    figure.suptitle("grasp, multi-object scenes, embedded tiny Qwen3-VL")
    figure.tight_layout()
    figure.savefig(args.out, dpi=90)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
