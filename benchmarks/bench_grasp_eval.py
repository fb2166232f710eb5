"""``qvl run grasp eval`` against a plain generation loop that gives the same answers.

Run: .venv/bin/python benchmarks/bench_grasp_eval.py --run-dir RUN [--repeats 2]

The plain loop is what a user would write: open each validation PNG, build the same prompt,
generate with the same grammar constraint at the same batch size, parse the five integers. qvl's
eval does that too, plus the metrics, the baselines (cached after the first eval of a data set),
``eval.json``, ``predictions.jsonl`` and the charts. Prints both wall times and their ratio
(goal <= 1.10x), after checking that both gave the same answers.
"""

import argparse
import json
import time
from pathlib import Path


def plain_loop(run_dir: Path) -> tuple[float, list[str]]:
    import torch

    from qvl.backbone.loading import load
    from qvl.config import load_config
    from qvl.plugins import load_plugins
    from qvl.runner.checkpoint import restore_config
    from qvl.runner.rundir import RunDir
    from qvl_grasp.collate import EnsembleCollator, generate_answers
    from qvl_grasp.data import data_root
    from qvl_grasp.readers import load_image, read_split

    host = load_plugins()
    run = RunDir(run_dir)
    config = load_config(host.task("grasp"), base=run.saved_config())
    started = time.perf_counter()
    backbone = load(restore_config(config, run.checkpoint()).backbone, stage="eval")
    backbone.model.eval()
    records = read_split("ocid", data_root(config, create=False), "val", config.task.split_files).records
    collate = EnsembleCollator(config.task, backbone.processor, members=1, seed=config.seed)
    answers: list[str] = []
    batch_size = config.eval.batch_size
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            chunk = records[start:start + batch_size]
            batch = collate([{"id": r.id, "image": load_image(r.image_path)} for r in chunk])
            batch.pop("grasp_crops")
            answers.extend(generate_answers(config.task, backbone, batch))
    return time.perf_counter() - started, answers


def qvl_eval(run_dir: Path) -> tuple[float, list[str]]:
    from qvl.plugins import load_plugins
    from qvl.runner.stages import run_stage

    host = load_plugins()
    started = time.perf_counter()
    result = run_stage(host, "grasp", "eval", run_dir=run_dir)
    elapsed = time.perf_counter() - started
    return elapsed, [p["answers"][0] for p in result.predictions]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    qvl_eval(args.run_dir)  # warm: the baselines cache, the file cache
    plain_times, qvl_times = [], []
    for _ in range(args.repeats):
        seconds, plain_answers = plain_loop(args.run_dir)
        plain_times.append(seconds)
        seconds, qvl_answers = qvl_eval(args.run_dir)
        qvl_times.append(seconds)
    same = plain_answers == qvl_answers
    plain, ours = min(plain_times), min(qvl_times)
    print(json.dumps({"images": len(plain_answers), "same_answers": same}))
    print(f"plain generation loop  {plain:7.2f} s")
    print(f"qvl run grasp eval     {ours:7.2f} s")
    print(f"ratio                  {ours / plain:7.2f}x (goal <= 1.10x)")


if __name__ == "__main__":
    main()
