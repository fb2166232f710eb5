"""VQA data set generation: samples/s with 1 and 2 workers at 1M samples, and peak memory at 100k vs 1M.

Run: .venv/bin/python benchmarks/bench_vqa_generate.py [--quick] [--trajectories 2000]
Uses fake trajectory records (4 tasks, mixed quality; generation never reads frames). Every
measurement runs in a fresh process; its peak RSS is the largest of that process and its workers.
"""

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RATIO = (0.5, 0.3, 0.2)


def fake_trajectories(count: int) -> list:
    from qvl_vqa.trajectory import Trajectory

    rng = random.Random(0)
    out = []
    for i in range(count):
        quality = rng.choices(("successful", "suboptimal", "failure"), (0.5, 0.3, 0.2))[0]
        frames = rng.randint(20, 300)
        out.append(Trajectory(id=f"episode_{i:06d}", task=f"task {i % 4}", data_source="bench", quality_label=quality,
                              partial_success=round(rng.uniform(0.2, 0.8), 3) if quality == "suboptimal" else None,
                              num_frames=frames, frames_shape=(frames, 224, 224, 3), npz_path=f"npz/{i:06d}.npz"))
    return out


def child(samples: int, workers: int, batch: int, trajectories: int, out: str) -> None:
    """One generation; prints its time and the process tree's peak RSS as JSON."""
    from qvl_vqa.config import VqaConfig
    from qvl_vqa.generation import generate

    records = fake_trajectories(trajectories)
    task = VqaConfig(num_samples=samples, sample_type_ratio=list(RATIO), num_workers=workers, save_batch_size=batch)
    start = time.perf_counter()
    generate(records, task, 0, Path(out), store_root="bench", store_fingerprint={}, progress=False)
    seconds = time.perf_counter() - start
    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kb / 1024}))


def run(samples: int, workers: int, batch: int, trajectories: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-vqa-") as folder:
        result = subprocess.run([sys.executable, __file__, "--child", str(samples), str(workers), str(batch),
                                 str(trajectories), str(Path(folder) / "data")],
                                check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--trajectories", type=int, default=2000)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        samples, workers, batch, trajectories, out = args.child
        child(int(samples), int(workers), int(batch), int(trajectories), out)
        return

    small_n, large_n, batch = (10_000, 100_000, 2_500) if args.quick else (100_000, 1_000_000, 10_000)
    print(f"{args.trajectories} fake trajectories (4 tasks, mixed quality), sample_type_ratio {list(RATIO)}, "
          f"max_frames 8, shards of {batch} rows")
    small = run(small_n, 1, batch, args.trajectories)
    one = run(large_n, 1, batch, args.trajectories)
    two = run(large_n, 2, batch, args.trajectories)
    print(f"generate {large_n} samples, 1 worker:   {large_n / one['seconds']:9.0f} samples/s")
    print(f"generate {large_n} samples, 2 workers:  {large_n / two['seconds']:9.0f} samples/s  "
          f"(x{one['seconds'] / two['seconds']:.2f})")
    print(f"peak RSS, 1 worker, {small_n} samples:   {small['peak_mb']:7.0f} MB")
    print(f"peak RSS, 1 worker, {large_n} samples:  {one['peak_mb']:7.0f} MB  (x{one['peak_mb'] / small['peak_mb']:.2f})")
    print(f"peak RSS, 2 workers, {large_n} samples: {two['peak_mb']:7.0f} MB  (the largest process)")

if __name__ == "__main__":
    main()
