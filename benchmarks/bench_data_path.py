"""A training step through qvl against the plain loop a user would write, and the compute floor.

Run: .venv/bin/python benchmarks/bench_data_path.py [--task grasp|reward] [--steps 60] [--workers 0 1 2]
[--compile]

Three measurements on the same tiny backbone and the task's default settings (grasp: full
fine-tune, frozen token embedding, answer-vocabulary loss, OCID-layout PNGs; reward: the same
backbone pooled into a linear head, three H.264 camera streams of a LeRobot v3.0 data set), the
files written by ``make-data``, batch 8:

* plain: a loop without qvl's runner: decode each sample in the main process (PIL for grasp's
  PNGs, PyAV through the LeRobot reader for reward's frames), the same collator, forward,
  backward, AdamW;
* qvl: ``qvl run grasp train`` in-process with the prepared-sample cache, for each --workers
  value, read from its ``metrics.jsonl`` (step time and its data wait, forward, backward,
  optimizer);
* compute: forward + backward + optimizer on one fixed batch, no data at all.

Prints ms/step of each and the ratios the data-path issue asks for: plain / qvl (goal >= 1.5x) and
qvl / compute (goal <= 1.3x). ``--compile`` adds ``train.compile = true`` with no worker (the median
over 5-step windows, so the compiling windows at the start drop out when --steps is 200 or more;
goal plain / qvl >= 2.2x). Nothing else should run on the machine meanwhile.
"""

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def _model(host, task, config):
    """The backbone, the task's head and a loss function, as the plain loop would set them up."""
    from qvl.backbone.loading import load

    backbone = load(config.backbone, stage="train")
    head = host.call("build_head", task=task, config=config, backbone=backbone, required=False)
    parameters = [p for p in backbone.model.parameters() if p.requires_grad]
    parameters += list(head.parameters()) if head is not None else []
    optimizer = torch.optim.AdamW(parameters, lr=config.train.lr)

    def loss(batch):
        return host.call("loss", task=task, config=config, backbone=backbone, head=head, batch=batch, step=0,
                         max_steps=config.train.steps)["loss"]

    return backbone, parameters, optimizer, loss


def _step(loss_fn, batch, parameters, optimizer) -> None:
    loss_fn(batch).backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def plain_loop(host, task, config, steps: int) -> float:
    """ms per step of a hand-written loop over the same files (the comparison the issue asks for)."""
    import numpy as np

    backbone, parameters, optimizer, loss_fn = _model(host, task, config)
    uncached = load_config_with(task, config, "train.prepared_cache=false")
    data = host.call("build_dataset", task=task, config=uncached, split="train")  # decodes on access
    # the processor on whole conversations each step, as a user's script calls it (no prompt rows kept)
    collate = host.call("build_collator", task=task, config=uncached, backbone=backbone, stage="train")
    rng = np.random.default_rng(0)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        batch = collate([data[int(i)] for i in rng.choice(len(data), size=config.train.batch_size, replace=False)])
        _step(loss_fn, batch, parameters, optimizer)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[5:])


def compute_only(host, task, config, steps: int) -> float:
    backbone, parameters, optimizer, loss_fn = _model(host, task, config)
    data = host.call("build_dataset", task=task, config=config, split="train")
    collate = host.call("build_collator", task=task, config=config, backbone=backbone, stage="train")
    batch = collate([data[i] for i in range(config.train.batch_size)])
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        _step(loss_fn, batch, parameters, optimizer)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[5:])


def load_config_with(task, config, *overrides: str):
    from qvl.config import load_config, to_dict

    return load_config(task, overrides=list(overrides), base=to_dict(config))


def qvl_runner(host, task_name: str, steps: int, workers: int, compiled: bool = False) -> dict[str, float]:
    from qvl.runner.stages import run_stage

    with tempfile.TemporaryDirectory() as tmp:
        run_stage(host, task_name, "train", run_dir=Path(tmp) / "run",
                  overrides=[f"train.steps={steps}", "train.log_every=5", "train.save_every=0", "train.eval_every=0",
                             f"train.num_workers={workers}", f"train.compile={str(compiled).lower()}"])
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()][1:]
    return {key: 1000 * statistics.median(r[key] for r in rows)
            for key in ("step_s", "data_wait_s", "forward_s", "backward_s", "optimizer_s")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="grasp", choices=["grasp", "reward"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--compile", action="store_true", help="also train.compile = true, no worker")
    args = parser.parse_args()

    from qvl.config import load_config
    from qvl.plugins import load_plugins

    host = load_plugins()
    task = host.task(args.task)
    config = load_config(task)
    print(f"{args.task} defaults, batch {config.train.batch_size}, {torch.get_num_threads()} torch threads, "
          f"{args.steps} steps each (medians, first 5 steps of the plain loops left out)")
    plain = plain_loop(host, task, config, args.steps)
    compute = compute_only(host, task, config, args.steps)
    print(f"{'plain loop (decoding in the main process)':<44} {plain:8.1f} ms/step")
    print(f"{'compute only (fixed batch)':<44} {compute:8.1f} ms/step")
    runs = [(f"qvl, prepared cache, {workers} worker(s)", workers, False) for workers in args.workers]
    runs += [("qvl, prepared cache, compiled, 0 workers", 0, True)] if args.compile else []
    for name, workers, compiled in runs:
        measured = qvl_runner(host, args.task, args.steps, workers, compiled)
        print(f"{name:<44} {measured['step_s']:8.1f} ms/step  "
              f"(data wait {measured['data_wait_s']:.1f}, forward {measured['forward_s']:.1f}, backward "
              f"{measured['backward_s']:.1f}, optimizer {measured['optimizer_s']:.1f})")
        print(f"    plain / qvl {plain / measured['step_s']:.2f}x (goal >= 1.5x)   "
              f"qvl / compute {measured['step_s'] / compute:.2f}x (goal <= 1.3x)")


if __name__ == "__main__":
    main()
