"""The grasp training step through qvl against the plain loop a user would write, and the compute floor.

Run: .venv/bin/python benchmarks/bench_data_path.py [--steps 60] [--workers 0 1 2]

Three measurements on the same tiny backbone (the grasp defaults: full fine-tune, frozen token
embedding, answer-vocabulary loss), the same OCID-layout files written by ``make-data``, batch 8:

* plain: a loop without qvl's runner: open each PNG with PIL in the main process, the same
  collator (working copy, augmentation, chat template), forward, backward, AdamW;
* qvl: ``qvl run grasp train`` in-process with the prepared-sample cache, for each --workers
  value, read from its ``metrics.jsonl`` (step time and its data wait, forward, backward,
  optimizer);
* compute: forward + backward + optimizer on one fixed batch, no data at all.

Prints ms/step of each and the ratios the data-path issue asks for: plain / qvl (goal >= 1.5x) and
qvl / compute (goal <= 1.3x). Nothing else should run on the machine meanwhile.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def plain_loop(config, steps: int) -> float:
    """ms per step of a hand-written loop over the same files (the comparison the issue asks for)."""
    import numpy as np

    from qvl.backbone.loading import load
    from qvl_grasp.answer_loss import answer_vocabulary_loss
    from qvl_grasp.collate import TrainCollator
    from qvl_grasp.data import data_root
    from qvl_grasp.readers import load_image, read_split

    backbone = load(config.backbone, stage="train")
    records = read_split("ocid", data_root(config, create=True), "train", config.task.split_files).records
    collate = TrainCollator(config.task, backbone.processor, seed=0)
    optimizer = torch.optim.AdamW([p for p in backbone.model.parameters() if p.requires_grad], lr=config.train.lr)
    rng = np.random.default_rng(0)
    times = []
    for step in range(steps):
        started = time.perf_counter()
        picked = rng.choice(len(records), size=config.train.batch_size, replace=False)
        samples = [{"id": records[i].id, "image": load_image(records[i].image_path), "grasps": list(records[i].grasps)}
                   for i in picked]
        batch = collate(samples)
        loss = answer_vocabulary_loss(backbone.model, backbone.tokenizer, batch)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(backbone.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[5:])


def compute_only(config, steps: int) -> float:
    from qvl.backbone.loading import load
    from qvl_grasp.answer_loss import answer_vocabulary_loss
    from qvl_grasp.collate import TrainCollator
    from qvl_grasp.data import data_root
    from qvl_grasp.readers import read_split

    backbone = load(config.backbone, stage="train")
    data = read_split("ocid", data_root(config, create=True), "train", config.task.split_files)
    batch = TrainCollator(config.task, backbone.processor, seed=0)([data[i] for i in range(config.train.batch_size)])
    optimizer = torch.optim.AdamW([p for p in backbone.model.parameters() if p.requires_grad], lr=config.train.lr)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        answer_vocabulary_loss(backbone.model, backbone.tokenizer, batch)["loss"].backward()
        torch.nn.utils.clip_grad_norm_(backbone.model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[5:])


def qvl_runner(host, steps: int, workers: int) -> dict[str, float]:
    from qvl.runner.stages import run_stage

    with tempfile.TemporaryDirectory() as tmp:
        run_stage(host, "grasp", "train", run_dir=Path(tmp) / "run",
                  overrides=[f"train.steps={steps}", "train.log_every=5", "train.save_every=0",
                             f"train.num_workers={workers}"])
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()][1:]
    return {key: 1000 * statistics.median(r[key] for r in rows)
            for key in ("step_s", "data_wait_s", "forward_s", "backward_s", "optimizer_s")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    from qvl.config import load_config
    from qvl.plugins import load_plugins

    host = load_plugins()
    config = load_config(host.task("grasp"))
    print(f"grasp defaults, batch {config.train.batch_size}, {torch.get_num_threads()} torch threads, "
          f"{args.steps} steps each (medians, first 5 steps of the plain loops left out)")
    plain = plain_loop(config, args.steps)
    compute = compute_only(config, args.steps)
    print(f"{'plain loop (PIL in the main process)':<44} {plain:8.1f} ms/step")
    print(f"{'compute only (fixed batch)':<44} {compute:8.1f} ms/step")
    for workers in args.workers:
        measured = qvl_runner(host, args.steps, workers)
        print(f"{f'qvl, prepared cache, {workers} worker(s)':<44} {measured['step_s']:8.1f} ms/step  "
              f"(data wait {measured['data_wait_s']:.1f}, forward {measured['forward_s']:.1f}, backward "
              f"{measured['backward_s']:.1f}, optimizer {measured['optimizer_s']:.1f})")
        print(f"    plain / qvl {plain / measured['step_s']:.2f}x (goal >= 1.5x)   "
              f"qvl / compute {measured['step_s'] / compute:.2f}x (goal <= 1.3x)")


if __name__ == "__main__":
    main()
