"""One plugin's default run on several seeds: each headline metric per seed, its mean and spread, and
whether the model clears each baseline on every seed.

Run: .venv/bin/python benchmarks/seed_sweep.py TASK [--seeds 0 1 2] [--runs-dir D] [--set KEY=VALUE ...]

For each seed N: ``qvl run TASK train --run-dir D/seed-N --set seed=N`` then ``eval`` (and ``rollout``
for vla_flow), with the same ``--set`` settings for every seed. A seed whose results exist is not run
again, so the same command resumes an interrupted sweep. Writes ``D/sweep.json`` and prints a Markdown
table for the plugin's README. Long (a default run per seed: minutes for reward, tens of minutes for
grasp, vqa or segment on 2 CPU cores): not a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple


class Headline(NamedTuple):
    """A metric of a results file (``eval`` or ``rollout``) at ``path``, with the baselines it must clear:
    either their values (``baselines``: name -> path) or a flag the plugin wrote itself (``cleared``)."""

    label: str
    source: str
    path: tuple[str, ...]
    lower_is_better: bool = False
    baselines: dict[str, tuple[str, ...]] = {}
    cleared: tuple[str, ...] | None = None


def _grasp_baselines(metric: str) -> dict[str, tuple[str, ...]]:
    return {name: ("baselines", name, metric) for name in ("random", "pca", "min_area_rect", "largest_object")}


def _segment_baselines(metric: str) -> dict[str, tuple[str, ...]]:
    return {name: ("baselines", name, metric) for name in ("uniform_common_k", "uniform_true_k", "frame_difference")}


HEADLINES: dict[str, list[Headline]] = {
    "grasp": [Headline("success rate", "eval", ("model", "success_rate"), baselines=_grasp_baselines("success_rate")),
              Headline("angle error (deg)", "eval", ("model", "mean_angle_error_deg"), lower_is_better=True),
              Headline("centre error (px)", "eval", ("model", "mean_center_error_px"), lower_is_better=True)],
    "reward": [Headline(label, "eval", ("model", key), lower, {"majority class": ("baselines", "majority_class", key)})
               for label, key, lower in (("accuracy", "accuracy", False), ("macro-F1", "macro_f1", False),
                                         ("MAE (bins)", "mae_bins", True))],
    "vqa": [Headline(label, "eval", (group, key), lower, cleared=("comparison", f"{group}/{key}", "beats_all"))
            for label, group, key, lower in (("preference (debiased)", "preference", "debiased_accuracy", False),
                                             ("progress MAE", "progress", "mae", True),
                                             ("progress RMSE", "progress", "rmse", True),
                                             ("Spearman", "progress", "spearman_per_trajectory", False))],
    "segment": [Headline("mAP@0.5", "eval", ("mAP@0.5",), baselines=_segment_baselines("mAP@0.5")),
                Headline("K accuracy", "eval", ("k_accuracy",), baselines=_segment_baselines("k_accuracy")),
                Headline("boundary MAE", "eval", ("boundary_mae",), True, _segment_baselines("boundary_mae"))],
    "vla_flow": [Headline("rollout success", "rollout", ("policies", "model", "success_rate"),
                          baselines={"random": ("policies", "random", "success_rate")}),
                 Headline("chunk MSE", "eval", ("mse",), True, {"mean action": ("baselines", "mean_action", "mse")}),
                 Headline("key accuracy", "eval", ("key_accuracy",),
                          baselines={"majority keys": ("baselines", "majority_keys", "key_accuracy")})],
}


def results_file(run_dir: Path, source: str) -> Path | None:
    """The newest ``eval/<split>/eval.json`` or ``rollout/<name>/rollout.json`` of a run."""
    found = sorted((run_dir / source).glob(f"*/{source}.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def value_at(results: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


def run_seed(task: str, seed: int, run_dir: Path, settings: list[str], sources: set[str]) -> None:
    """Train, evaluate (and roll out) one seed, skipping what its run dir already holds."""
    sets = [arg for setting in [f"seed={seed}", *settings] for arg in ("--set", setting)]
    stages = ["train", "eval", *(["rollout"] if "rollout" in sources else [])]
    if all(results_file(run_dir, source) for source in sources):
        print(f"seed {seed}: results found in {run_dir}, not run again", file=sys.stderr)
        return
    for stage in stages:
        if stage != "train" and results_file(run_dir, stage):
            continue
        # a run with a checkpoint goes on from it (the runner only saves again when it had finished)
        resume = ["--resume"] if stage == "train" and any(run_dir.glob("checkpoints/step-*")) else []
        command = [sys.executable, "-m", "qvl", "run", task, stage, "--run-dir", str(run_dir), *resume, *sets]
        print("+", " ".join(command), file=sys.stderr)
        if subprocess.run(command, stdout=sys.stderr).returncode != 0:  # stdout: the table alone
            sys.exit(f"seed {seed}: {stage} failed (its message is above); run the same command again to go on")


def summary(task: str, seeds: list[int], runs_dir: Path) -> dict[str, Any]:
    """Per headline: the value of each seed, mean, sample standard deviation, range, and per baseline
    whether the model cleared it on every seed."""
    loaded = {seed: {source: json.loads(path.read_text()) for source in ("eval", "rollout")
                     if (path := results_file(runs_dir / f"seed-{seed}", source)) is not None} for seed in seeds}
    rows = {}
    for headline in HEADLINES[task]:
        values = [value_at(loaded[seed].get(headline.source, {}), headline.path) for seed in seeds]
        numbers = [float(v) for v in values if isinstance(v, (int, float))]
        row: dict[str, Any] = {"values": values}
        if numbers:
            row.update(mean=statistics.fmean(numbers), sd=statistics.stdev(numbers) if len(numbers) > 1 else 0.0,
                       min=min(numbers), max=max(numbers))
        cleared = {}
        for name, path in headline.baselines.items():
            wins = []
            for seed, value in zip(seeds, values):
                baseline = value_at(loaded[seed].get(headline.source, {}), path)
                if isinstance(value, (int, float)) and isinstance(baseline, (int, float)):
                    wins.append(value < baseline if headline.lower_is_better else value > baseline)
            cleared[name] = bool(wins) and len(wins) == len(seeds) and all(wins)
        if headline.cleared is not None:
            flags = [value_at(loaded[seed].get(headline.source, {}), headline.cleared) for seed in seeds]
            cleared["every baseline (the plugin's comparison)"] = all(flag is True for flag in flags)
        row["clears_on_every_seed"] = cleared
        rows[headline.label] = row
    return {"task": task, "seeds": seeds, "metrics": rows}


def markdown(result: dict[str, Any]) -> str:
    seeds = result["seeds"]
    lines = ["| metric | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd | clears on every seed |",
             "|---|" + "---|" * len(seeds) + "---|---|"]
    for label, row in result["metrics"].items():
        values = [f"{v:.3f}" if isinstance(v, (int, float)) else "-" for v in row["values"]]
        spread = f"{row['mean']:.3f} ± {row['sd']:.3f}" if "mean" in row else "-"
        cleared = ", ".join(f"{name} {'yes' if ok else 'NO'}" for name, ok in row["clears_on_every_seed"].items())
        lines.append(f"| {label} | " + " | ".join(values) + f" | {spread} | {cleared or '-'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task", choices=sorted(HEADLINES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs-dir", type=Path, default=None, help="default: runs/sweep-TASK")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every seed's stages (repeatable)")
    parser.add_argument("--summary-only", action="store_true", help="summarise the run dirs as they are")
    args = parser.parse_args()

    runs_dir = args.runs_dir or Path("runs") / f"sweep-{args.task}"
    sources = {headline.source for headline in HEADLINES[args.task]}
    if not args.summary_only:
        for seed in args.seeds:
            run_seed(args.task, seed, runs_dir / f"seed-{seed}", args.settings, sources)
    result = summary(args.task, args.seeds, runs_dir)
    result["settings"] = args.settings
    runs_dir.mkdir(parents=True, exist_ok=True)
    written = runs_dir / "sweep.json"
    partial = written.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(written)  # never a half-written summary
    print(markdown(result))
    print(f"\nwritten: {written}", file=sys.stderr)


if __name__ == "__main__":
    main()
