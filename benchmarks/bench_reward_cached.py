"""Reward training steps/s: end-to-end (the backbone runs every step) vs cached frozen features.

Run: .venv/bin/python benchmarks/bench_reward_cached.py [--batch 8] [--e2e-steps 20] [--cached-steps 400]

Both paths go through the reward plugin's own hooks (build_dataset, build_collator, build_head,
loss) on the default synthetic data set, with what the runner does around them (a shuffled
DataLoader, backward, gradient clipping, AdamW), so a step includes reading its samples: video
decoding and tokenising end to end, memory-mapped feature reads cached. The cache is built first
in a temporary folder (its one-time build time is printed) and timed afterwards, as a second
``train`` sees it. Each rate is the best of ``--rounds`` alternating rounds (the machines are shared).
"""

import argparse
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--e2e-steps", type=int, default=20)
    parser.add_argument("--cached-steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default); on an oversubscribed CPU, 1 avoids OpenMP "
                             "threads waiting on each other, which costs tiny head steps far more than backbone steps")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="extra --set for both")
    args = parser.parse_args()

    import torch

    from qvl.config import load_config
    from qvl.plugins import load_plugins
    from qvl.runner.modules import CollateWithIds, IndexedSamples, parameter_groups
    from timing import best_of_rounds, train_steps_per_second

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    host = load_plugins()
    task = host.task("reward")
    features_root = tempfile.mkdtemp(prefix="bench-reward-features-")
    modes = {
        "end-to-end": load_config(task, [], [*args.overrides]),
        "cached": load_config(task, [], ["task.features=cached", "backbone.finetune=frozen",
                                         f"task.cached.root={features_root!r}", *args.overrides]),
    }

    def setup(config):
        needs = host.call("uses_backbone", required=False, task=task, config=config, stage="train")
        backbone = None if needs is False else host.call("load_backbone", task=task, config=config, stage="train")
        head = host.call("build_head", task=task, config=config, backbone=backbone).float()
        data = host.call("build_dataset", task=task, config=config, split="train")
        collate = host.call("build_collator", task=task, config=config, backbone=backbone, stage="train")
        loader = torch.utils.data.DataLoader(IndexedSamples(data), batch_size=args.batch, shuffle=True,
                                             drop_last=True, collate_fn=CollateWithIds(collate))
        params = [p for p in head.parameters()]
        if backbone is not None:
            params += [p for p in backbone.model.parameters() if p.requires_grad]
        module = torch.nn.ModuleList([head] + ([backbone.model] if backbone is not None else []))
        optimizer = torch.optim.AdamW(parameter_groups(module, 0.01), lr=1e-4)
        return backbone, head, loader, params, optimizer

    start = time.perf_counter()
    prepared = {"cached": setup(modes["cached"])}
    build_s = time.perf_counter() - start
    prepared["end-to-end"] = setup(modes["end-to-end"])
    samples = len(prepared["cached"][2].dataset)

    def run(mode: str, steps: int) -> float:
        config = modes[mode]
        backbone, head, loader, params, optimizer = prepared[mode]

        def loss_of(batch: dict, step: int) -> torch.Tensor:
            return host.call("loss", task=task, config=config, backbone=backbone, head=head,
                             batch=batch["inputs"], step=step, max_steps=steps)["loss"]

        return train_steps_per_second(loader, steps, loss_of, params, optimizer)

    run("end-to-end", 2)  # warm-up: first-batch allocations and lazy imports
    run("cached", 5)
    rates = best_of_rounds(args.rounds, {"end-to-end": lambda: run("end-to-end", args.e2e_steps),
                                         "cached": lambda: run("cached", args.cached_steps)})
    threads = torch.get_num_threads()
    print(f"train split: {samples} frames, batch {args.batch}, {threads} torch threads, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}")
    print(f"cache build (one time, incl. loading the frozen backbone): {build_s:.1f} s "
          f"({samples / build_s:.1f} frames/s)")
    print(f"end-to-end: {rates['end-to-end']:.2f} steps/s")
    print(f"cached:     {rates['cached']:.1f} steps/s")
    print(f"ratio:      {rates['cached'] / rates['end-to-end']:.0f}x")


if __name__ == "__main__":
    main()
