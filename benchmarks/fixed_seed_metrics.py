"""Each plugin's short fixed-seed run (make-data, train, eval) and its eval metrics, to compare two trees.

A refactor that claims "behaviour unchanged" runs this on the tree before and after and compares:

    .venv/bin/python benchmarks/fixed_seed_metrics.py --out after.json
    PYTHONPATH=$(python benchmarks/fixed_seed_metrics.py --pythonpath-of /tmp/before) \\
        .venv/bin/python benchmarks/fixed_seed_metrics.py --out before.json
    .venv/bin/python benchmarks/fixed_seed_metrics.py --compare before.json after.json

Every run gets its own data folder and cache (``QVL_CACHE``), so data generation is compared too.
Long (minutes per plugin on 2 CPU cores): not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = 200
# per plugin: settings small enough for minutes on a CPU, the same for both trees
RUNS = {
    "grasp": ["task.synthetic.train=48", "task.synthetic.val=16", "task.synthetic.test=16",
              "task.synthetic.width=160", "task.synthetic.height=120", "eval.max_samples=16"],
    "reward": ["task.synthetic.train_episodes=6", "task.synthetic.val_episodes=2", "task.synthetic.frames=12"],
    "vqa": ["task.synthetic.tasks=2", "task.synthetic.trajectories_per_task=12", "task.test_fraction=0.3",
            "task.synthetic.min_frames=8", "task.synthetic.max_frames=12", "task.num_samples=240", "task.max_frames=4",
            "task.bootstrap=200", "train.eval_samples=8", "eval.max_samples=48"],
    "segment": ["task.synthetic.episodes=24", "task.synthetic.max_frames=24", "task.num_frames=6",
                "task.test_fraction=0.3"],
    "vla_flow": ["task.record.episodes=10", "task.record.canvas=64", "task.record.max_steps=30", "task.chunk_size=8",
                 "task.hidden_dim=32", "task.num_layers=2", "task.eval_steps=[1, 2]", "train.eval_samples=4",
                 "task.val_fraction=0.2", "task.test_fraction=0.3", "task.rollout.validate_episodes=2",
                 "task.rollout.max_steps=6"],
}
# stages that write the data set first where train does not build it itself
MAKE_DATA = {"grasp": ("make-data",), "reward": ("make-data",)}
# where make-data writes; the other tasks build their data in the run's own cache
DATA_KEYS = {"grasp": "task.data_dir", "reward": "task.data_dir"}


def numbers(value: object, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics dict, by dotted key."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in numbers(item, f"{prefix}{key}.").items()}
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {prefix.rstrip("."): float(value)}
    return {}


def run_plugin(name: str, work: Path) -> dict[str, float]:
    env = {**os.environ, "QVL_CACHE": str(work / "cache"), "PYGLET_HEADLESS": "true", "PYTHONUNBUFFERED": "1"}
    data = [f"{DATA_KEYS[name]}={str(work / 'data')!r}"] if name in DATA_KEYS else []
    settings = [*data, "seed=0", f"train.steps={STEPS}", "train.log_every=50", f"train.eval_every={STEPS}",
                f"train.save_every={STEPS}", *RUNS[name]]
    overrides = [part for setting in settings for part in ("--set", setting)]
    run_dir = work / "run"
    for stage in (*MAKE_DATA.get(name, ()), "train", "eval"):
        done = subprocess.run([sys.executable, "-m", "qvl", "run", name, stage, "--run-dir", str(run_dir), *overrides],
                              env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{name} {stage} failed:\n{done.stderr[-3000:]}")
    split_dirs = sorted((run_dir / "eval").iterdir())
    return numbers(json.loads((split_dirs[0] / "eval.json").read_text()))


def compare(before: dict, after: dict) -> int:
    differing = 0
    for plugin in sorted(set(before) | set(after)):
        old, new = before.get(plugin, {}), after.get(plugin, {})
        keys = sorted(set(old) | set(new))
        same = [k for k in keys if k in old and k in new and abs(old[k] - new[k]) <= 1e-9 * max(1.0, abs(old[k]))]
        print(f"{plugin}: {len(same)} of {len(keys)} metrics identical")
        for key in keys:
            if key not in same:
                differing += 1
                print(f"  {key}: before {old.get(key)} after {new.get(key)}")
    return differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write {plugin: {metric: value}} here")
    parser.add_argument("--plugins", nargs="*", default=list(RUNS))
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--pythonpath-of", type=Path, metavar="TREE",
                        help="print the PYTHONPATH that makes this interpreter import TREE's qvl and plugins")
    args = parser.parse_args()
    if args.pythonpath_of:
        tree = args.pythonpath_of.resolve()
        print(os.pathsep.join(str(tree / part / "src") for part in ["core", *(f"plugins/{p}" for p in RUNS)]))
        return
    if args.compare:
        differing = compare(*(json.loads(path.read_text()) for path in args.compare))
        print(f"{differing} metrics differ")
        raise SystemExit(1 if differing else 0)
    import qvl

    print(f"qvl from {Path(qvl.__file__).parent}", file=sys.stderr)
    results = {}
    for name in args.plugins:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"fixed-seed-{name}-") as work:
            results[name] = run_plugin(name, Path(work))
        print(f"{name}: {len(results[name])} metrics in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if args.out:
            args.out.write_text(json.dumps(results, indent=1, sort_keys=True))
    if not args.out:
        print(json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
