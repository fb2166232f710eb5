"""Synchronous vs asynchronous chunked control against a slow policy server.

Run: .venv/bin/python benchmarks/bench_vla_flow_async.py [--latency-ms 100] [--chunk 50] [--period-s 0.02]

A fake backend (``window_checking_backend.py``) sleeps ``--latency-ms`` per call (the model) and
returns a chunk whose action ``i`` is ``step + i`` for the observation of ``step``, after checking
it has the frames of the whole window (``--num-frames`` frames ``--frame-skip`` steps apart, each
the frame of its step: the actor keeps every tick's frame and sends those of the steps between its
observations); a fake environment ticks every ``--period-s``.
Synchronous control (``ChunkQueue(threshold=0)``) asks for a chunk only once the queue is empty and
waits for it; asynchronous control asks when the queue falls to ``--threshold`` of a chunk and keeps
executing meanwhile. Prints executed actions per second and the fraction of control ticks spent
waiting for each, the frames sent per observation, the ratio, and checks every executed action is
the one for its timestep (so stale-action dropping and blending line chunks up correctly). The
asynchronous run still waits for the first chunk of the episode (one latency), nothing more once it
is running.
"""

import argparse
import sys

from window_checking_backend import WindowCheckingBackend, step_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=100.0, help="simulated policy latency per call")
    parser.add_argument("--period-s", type=float, default=0.02, help="control period (0.02: 50 Hz)")
    parser.add_argument("--steps", type=int, default=300, help="actions executed per run")
    parser.add_argument("--threshold", type=float, default=0.5, help="async refill threshold g")
    parser.add_argument("--image-size", type=int, default=64)
    WindowCheckingBackend.add_arguments(parser)
    args = parser.parse_args()

    import numpy as np

    from qvl_vla_flow.async_actor import ActorStats, AsyncActor
    from qvl_vla_flow.chunk_queue import ChunkQueue
    from qvl_vla_flow.client import PolicyClient
    from qvl_vla_flow.server import PolicyServer

    class Env:
        """Frame ``t`` encodes ``t`` (so consecutive frames differ and the backend can read it back)."""

        def __init__(self) -> None:
            self.executed: list[float] = []

        def observation(self) -> tuple[np.ndarray, np.ndarray]:
            t = len(self.executed)
            return step_frame(t, args.image_size), np.zeros(args.action_dim, np.float32)

        def step(self, action: np.ndarray) -> bool:
            self.executed.append(float(action[0]))
            return False

    def run(client: PolicyClient, threshold: float) -> tuple[ActorStats, float]:
        env = Env()
        actor = AsyncActor(client, ChunkQueue(threshold=threshold), control_period_s=args.period_s)
        stats = actor.run(env, max_steps=args.steps)
        misaligned = float(np.abs(np.asarray(env.executed) - np.arange(len(env.executed))).max())
        return stats, misaligned

    print(f"policy latency {args.latency_ms:g} ms, chunk {args.chunk}, control period {args.period_s:g} s "
          f"({1 / args.period_s:g} actions/s at most), {args.steps} steps per run")
    results = {}
    backend = WindowCheckingBackend.from_arguments(args, args.latency_ms / 1000.0)
    with PolicyServer(backend) as server, PolicyClient(server.url) as client:
        for name, threshold in (("sync", 0.0), (f"async g={args.threshold:g}", args.threshold)):
            stats, misaligned = run(client, threshold)
            results[name] = stats
            rtt = np.percentile(stats.round_trip_ms, 50) if stats.round_trip_ms else float("nan")
            print(f"{name:12s} {stats.actions_per_s:6.1f} actions/s  waiting {100 * stats.wait_fraction:5.1f} % of "
                  f"ticks  ({stats.observations_sent} observations, "
                  f"{stats.frames_sent / max(stats.observations_sent, 1):.2f} frames each, {stats.chunks} chunks, "
                  f"{stats.stale_chunks} stale, {stats.errors} errors, round trip p50 {rtt:.0f} ms, "
                  f"worst misalignment {misaligned:g})")
            if misaligned > 1e-3 or stats.errors:
                sys.exit(f"{name}: an executed action was not the one for its timestep, or a request failed")
    sync, fast = results.values()
    print(f"async / sync executed actions per second: {fast.actions_per_s / max(sync.actions_per_s, 1e-9):.2f}")


if __name__ == "__main__":
    main()
