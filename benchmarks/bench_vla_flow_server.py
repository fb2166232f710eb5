"""Policy server under concurrent load: latency, throughput and reply routing over loopback websockets.

Run: .venv/bin/python benchmarks/bench_vla_flow_server.py [--clients 8] [--requests 200] [--compute-ms 2]
[--stride 1]

A fake backend (``window_checking_backend.py``) stands in for the model: it keeps each session's
frames by step, as the real session does, reads the window of ``--num-frames`` frames
``--frame-skip`` steps apart (failing when one was never sent), sleeps ``--compute-ms`` (GPU work
releases the GIL the same way) and returns a chunk tagged with its session and the request, so a
reply lost or delivered to another client's session is caught. Each client asks every ``--stride``
steps, handing the client its whole window; the client sends only the frames the server lacks (one
per request at stride 1, up to the window when the stride reaches past it). All backend calls share
one worker thread, as they would share one model: throughput is bounded by ``1000 / compute_ms``
requests per second. Prints round-trip latency percentiles seen by the clients, the server-side
time, frames sent per request and throughput.
"""

import argparse
import sys
import threading
import time

from window_checking_backend import WindowCheckingBackend, step_frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="per client")
    parser.add_argument("--compute-ms", type=float, default=2.0, help="simulated model time per call")
    parser.add_argument("--image-size", type=int, default=224, help="square uint8 frames of this side")
    WindowCheckingBackend.add_arguments(parser)
    parser.add_argument("--stride", type=int, default=1, help="steps between a client's requests")
    args = parser.parse_args()

    import numpy as np

    from qvl_vla_flow.client import PolicyClient
    from qvl_vla_flow.samples import window_steps
    from qvl_vla_flow.server import PolicyServer

    latencies: list[list[float]] = [[] for _ in range(args.clients)]
    server_ms: list[float] = []
    frames_sent = [0] * args.clients
    problems: list[str] = []
    backend = WindowCheckingBackend.from_arguments(args, args.compute_ms / 1000.0, tag_sessions=True)
    with PolicyServer(backend, max_sessions=max(16, args.clients)) as server:
        barrier = threading.Barrier(args.clients + 1)

        def client_loop(tag: int) -> None:
            try:
                with PolicyClient(server.url) as client:
                    state = np.zeros(args.action_dim, np.float32)
                    frames: dict[int, np.ndarray] = {}  # the client side's recent frames, by step

                    def frame(step: int) -> np.ndarray:
                        if step not in frames:
                            frames[step] = step_frame(step, args.image_size, tag)
                        return frames[step]

                    barrier.wait()
                    for i in range(args.requests):
                        step = i * args.stride
                        window = {s: frame(s) for s in client.window_steps(step)}
                        sent = time.perf_counter()
                        start, actions = client.infer(window, state, step=step)
                        latencies[tag].append((time.perf_counter() - sent) * 1000.0)
                        server_ms.append(client.last_server_ms)
                        if start != step or actions[0, 0] != step or actions[0, 1] != tag:
                            problems.append(f"client {tag} request {i}: got step {start}, session tag "
                                            f"{actions[0, 1]:g}, request {actions[0, 0]:g}")
                        for old in [s for s in frames if s < window_steps(step, args.num_frames,
                                                                          args.frame_skip)[0]]:
                            del frames[old]
                    frames_sent[tag] = client.frames_sent
            except Exception as exc:  # counted as lost replies below
                problems.append(f"client {tag}: {type(exc).__name__}: {exc}")
                barrier.abort()

        threads = [threading.Thread(target=client_loop, args=(tag,)) for tag in range(args.clients)]
        for thread in threads:
            thread.start()
        barrier.wait()
        started = time.perf_counter()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started

    answered = sum(len(per_client) for per_client in latencies)
    expected = args.clients * args.requests
    every = np.concatenate([np.asarray(per_client) for per_client in latencies]) if answered else np.zeros(1)
    print(f"{args.clients} clients x {args.requests} requests every {args.stride} step(s), "
          f"{args.image_size}x{args.image_size} frames, window of {args.num_frames} frames {args.frame_skip} steps "
          f"apart, chunk {args.chunk}x{args.action_dim}, {args.compute_ms:g} ms simulated compute per call")
    print(f"answered {answered}/{expected}, misrouted or wrong {len(problems)}, "
          f"frames sent per request {sum(frames_sent) / max(answered, 1):.2f}")
    print(f"round trip ms: p50 {np.percentile(every, 50):.2f}  p99 {np.percentile(every, 99):.2f}  "
          f"max {every.max():.2f}   (server-side p50 {np.percentile(server_ms or [0], 50):.2f})")
    bound = 1000.0 / args.compute_ms if args.compute_ms > 0 else float("inf")
    print(f"throughput {answered / seconds:.0f} requests/s over {seconds:.2f} s "
          f"(one model thread: at most {bound:.0f}/s)")
    if problems or answered != expected:
        print("\n".join(problems[:10]))
        sys.exit(1)


if __name__ == "__main__":
    main()
