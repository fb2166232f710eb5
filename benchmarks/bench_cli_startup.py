"""How long `qvl --help` takes, against a bare interpreter start (ratio printed).

Run: .venv/bin/python benchmarks/bench_cli_startup.py
"""

import statistics
import subprocess
import sys
import time


def best_of(command: list[str], repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    bare = best_of([sys.executable, "-c", "pass"])
    help_time = best_of([sys.executable, "-m", "qvl", "--help"])
    tasks_time = best_of([sys.executable, "-m", "qvl", "tasks"], repeats=3)
    print(f"python -c pass      {bare * 1000:8.1f} ms")
    print(f"qvl --help          {help_time * 1000:8.1f} ms   ratio to bare python {help_time / bare:5.2f}x")
    print(f"qvl tasks           {tasks_time * 1000:8.1f} ms   ratio to bare python {tasks_time / bare:5.2f}x")


if __name__ == "__main__":
    main()
