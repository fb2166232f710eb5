"""vla_flow per-step inference: a cached step (encode the one new frame, sample a chunk) vs
re-encoding the whole window every step, as the seed's server did.

Run: .venv/bin/python benchmarks/bench_vla_flow_inference.py [--steps 40] [--set KEY=VALUE ...]

Both paths play the same Miniworld frames (rendered at the recording canvas, 384x384) through the
default policy shape (random weights: latency does not depend on them) with the run's feature
settings. "cached" is :class:`qvl_vla_flow.session.PolicySession` asked for a chunk every step,
so each step encodes its new frame once and reads frames t-2 and t-4 from the session; "window"
encodes every frame of the window again at every step. Latency is split into encoding and the
expert's sampling (``task.sampler`` / ``task.sampling_steps``). The issue's goal: >= 2.5x on a CPU
with the tiny backbone; on a GPU at ``--set backbone.name=preset:qwen3-vl-2b`` <= 50 ms per cached step.

Two kinds of step are timed: "chunk" samples the whole ``task.chunk_size`` chunk (what a server
returns to an asynchronous client), "executed" samples only the ``task.rollout.execute_steps``
actions a rollout executes before asking again (the same actions as the whole chunk's first ones:
the expert is causal; this is what ``qvl run vla_flow rollout`` does). ``--compile`` times the
``torch.compile``d expert (``task.compile_expert``) as well.
"""

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="extra --set")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile'd expert")
    args = parser.parse_args()

    import numpy as np
    import torch

    from qvl.config import load_config
    from qvl.plugins import load_plugins
    from qvl_vla_flow.frame_features import extractor
    from qvl_vla_flow.model import build_policy
    from qvl_vla_flow.record import make_env
    from qvl_vla_flow.session import PolicySession, backbone_encoder, compile_sampler

    torch.manual_seed(0)
    config = load_config(load_plugins().task("vla_flow"), [], args.overrides)
    t = config.task
    device = "cuda" if torch.cuda.is_available() else "cpu"
    policy = build_policy(config).to(device).eval()
    cache = extractor(config)
    if device == "cuda" and not getattr(cache.backbone, "quantized", False):
        cache.backbone.model.to(device)
    encode_frame = backbone_encoder(config)
    timings = {"encode": [], "sample": []}

    def timed_encode(frame: np.ndarray, instruction: str) -> np.ndarray:
        start = time.perf_counter()
        features = encode_frame(frame, instruction)
        if device == "cuda":
            torch.cuda.synchronize()
        timings["encode"].append(time.perf_counter() - start)
        return features

    env = make_env(t.record.env, t.record.canvas, args.steps + 5)
    frames = [env.reset(seed=1_234_567)[0]]
    for i in range(args.steps):
        frames.append(env.step(i % 3)[0])
    env.close()
    instruction = "go to the red box"

    def run(cached: bool, length: int | None) -> dict[str, float]:
        timings["encode"].clear()
        timings["sample"].clear()
        totals = []
        session = PolicySession.for_run(config, policy, encode=timed_encode)
        session.reset(instruction)
        for step, frame in enumerate(frames):
            start = time.perf_counter()
            if not cached:  # a fresh session per step: every window frame is encoded again
                session.reset(instruction)
                for s in session.window_steps(step):
                    session.observe(frames[s], step=s)
            else:
                session.observe(frame, step=step)
            window = session.window()
            sampled = time.perf_counter()
            features = torch.from_numpy(window).float()[None].to(device)
            state = torch.from_numpy(session.rest).float()[None].to(device)
            policy.sample(features, state, steps=t.sampling_steps, method=t.sampler, length=length)
            if device == "cuda":
                torch.cuda.synchronize()
            end = time.perf_counter()
            timings["sample"].append(end - sampled)
            if step >= 2:  # the first steps warm up (and encode fewer distinct frames)
                totals.append(end - start)
        per_step = statistics.median(totals)
        encode_per_step = sum(timings["encode"]) / len(frames)
        return {"step_ms": per_step * 1000, "encode_ms": encode_per_step * 1000,
                "sample_ms": statistics.median(timings["sample"]) * 1000, "encoded": len(timings["encode"])}

    kinds = {"chunk": None, "executed": t.rollout.execute_steps}
    variants = [("plain", False)] + ([("compiled", True)] if args.compile else [])
    print(f"device {device}, backbone {config.backbone.name}, {t.num_frames} frames at skip {t.frame_skip}, "
          f"image {t.image_size[0]}x{t.image_size[1]}, sampler {t.sampler}/{t.sampling_steps}, chunk {t.chunk_size}, "
          f"executed {t.rollout.execute_steps}, {len(frames)} steps, {torch.get_num_threads()} threads")
    for variant, compiled in variants:
        if compiled:
            compile_sampler(policy)
        best: dict[tuple[str, str], dict[str, float]] = {}
        for _ in range(args.rounds):  # alternated, so a busy spell of the machine hits both paths
            for kind, length in kinds.items():
                for name, cached in (("cached", True), ("window", False)):
                    result = run(cached, length)
                    if (kind, name) not in best or result["step_ms"] < best[kind, name]["step_ms"]:
                        best[kind, name] = result
        for kind, length in kinds.items():
            print(f"{variant} expert, {kind} ({length or t.chunk_size} of {t.chunk_size} chunk steps sampled):")
            for name in ("cached", "window"):
                r = best[kind, name]
                print(f"  {name:7s} {r['step_ms']:8.1f} ms/step (encoding {r['encode_ms']:.1f} ms/step, "
                      f"{int(r['encoded'])} frames encoded; expert sampling {r['sample_ms']:.1f} ms)")
            speedup = best[kind, "window"]["step_ms"] / best[kind, "cached"]["step_ms"]
            print(f"  speed-up of the cached step: {speedup:.2f}x (goal >= 2.5x)")

if __name__ == "__main__":
    main()
