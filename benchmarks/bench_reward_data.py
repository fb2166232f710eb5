"""Reward data path: frames decoded per second by the LeRobot reader, samples/s through the collator.

Run: .venv/bin/python benchmarks/bench_reward_data.py [--samples 128] [--batch 8]
Uses the embedded synthetic LeRobot v3.0 dataset (written on first use): 3 cameras, H.264, g=2.
"""

import argparse
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from setup_task import frozen_backbone, load_task

    host, task, config = load_task("reward")
    data = host.call("build_dataset", task=task, config=config, split="train")
    count = min(args.samples, len(data))
    cameras = len(config.task.camera_keys)

    order = list(range(len(data)))
    random.Random(0).shuffle(order)
    start = time.perf_counter()
    samples = [data[i] for i in order[:count]]  # shuffled access, as training reads
    random_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(count):
        data[i]
    sequential_s = time.perf_counter() - start

    backbone = frozen_backbone(host, task)
    collate = host.call("build_collator", task=task, config=config, backbone=backbone, stage="train")
    start = time.perf_counter()
    for first in range(0, count, args.batch):
        collate(samples[first : first + args.batch])
    collate_s = time.perf_counter() - start
    size = samples[0]["images"][0].size
    print(f"{count} samples x {cameras} cameras of {size[0]}x{size[1]}; model input "
          f"{config.task.image_size[0]}x{config.task.image_size[1]} per camera; batch {args.batch}")
    print(f"decode, shuffled order:     {count * cameras / random_s:8.1f} frames/s ({count / random_s:.1f} samples/s)")
    print(f"decode, in order:           {count * cameras / sequential_s:8.1f} frames/s")
    print(f"collate (processor, chat):  {count / collate_s:8.1f} samples/s")
    print(f"training data path:         {count / (random_s + collate_s):8.1f} samples/s (shuffled decode + collate)")


if __name__ == "__main__":
    main()
