"""Images per second through the grasp training data path: read PNG + mask, augment, quantize, collate.

Run: .venv/bin/python benchmarks/bench_grasp_data.py [--images 256] [--batch 8]
Uses the embedded synthetic OCID-format data set (rendered on first use).
"""

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    from setup_task import frozen_backbone, load_task

    host, task, config = load_task("grasp")
    backbone = frozen_backbone(host, task)
    data = host.call("build_dataset", task=task, config=config, split="train")
    collate = host.call("build_collator", task=task, config=config, backbone=backbone, stage="train")
    count = min(args.images, len(data))

    start = time.perf_counter()
    samples = [data[i] for i in range(count)]
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    for first in range(0, count, args.batch):
        collate(samples[first : first + args.batch])
    collate_s = time.perf_counter() - start
    print(f"{count} images of {data[0]['image'].size[0]}x{data[0]['image'].size[1]}, batch {args.batch}, "
          f"model input {config.task.model_image_size[0]}x{config.task.model_image_size[1]}")
    print(f"read (PNG + mask + annotations):      {count / read_s:7.1f} images/s")
    print(f"augment + quantize + chat collate:    {count / collate_s:7.1f} images/s")
    print(f"whole data path:                      {count / (read_s + collate_s):7.1f} images/s")


if __name__ == "__main__":
    main()
