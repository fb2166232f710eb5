"""vla_flow training steps/s: precomputed frame features (the default) vs encoding frames on the fly.

Run: .venv/bin/python benchmarks/bench_vla_flow_features.py [--batch 32] [--fly-steps 5] [--cached-steps 200]

Both paths train the same policy with the plugin's hooks (build_dataset, build_collator,
build_head, loss) and AdamW on the default recordings (recorded and converted on first use, in
qvl's cache). "cached" reads each window's per-frame features from the feature cache, as
``qvl run vla_flow train`` does; "on the fly" is what a plain script does without it: every step
decodes the window's frames and puts each one through the frozen backbone (no gradient) with the
instruction, then trains the same step. The issue's goal: >= 10x. Each rate is the best of
``--rounds`` alternating rounds (the machines are shared).
"""

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--fly-steps", type=int, default=5)
    parser.add_argument("--cached-steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="extra --set")
    args = parser.parse_args()

    import torch

    from qvl.features import extract
    from qvl.runner.modules import CollateWithIds, IndexedSamples
    from qvl_vla_flow.frame_features import extractor, feature_spec
    from qvl_vla_flow.model import optimizer_groups
    from qvl_vla_flow.pipeline import converted
    from setup_task import load_task
    from timing import best_of_rounds, train_steps_per_second

    torch.manual_seed(0)
    host, task, config = load_task("vla_flow", args.overrides)
    start = time.perf_counter()
    data = host.call("build_dataset", task=task, config=config, split="train")
    build_s = time.perf_counter() - start
    head = host.call("build_head", task=task, config=config, backbone=None)
    collate = host.call("build_collator", task=task, config=config, backbone=None, stage="train")
    loader = torch.utils.data.DataLoader(IndexedSamples(data), batch_size=args.batch, shuffle=True, drop_last=True,
                                         collate_fn=CollateWithIds(collate))
    optimizer = torch.optim.AdamW(optimizer_groups(config, head), lr=1e-4)

    backbone = extractor(config).backbone
    spec = feature_spec(config)
    _, dataset = converted(config)
    table = dataset["train"]
    rows = {(e, f): i for i, (e, f) in enumerate(zip(table["episode"], table["frame"]))}

    def encode_on_the_fly(batch: dict) -> torch.Tensor:
        """What the step would cost without the cache: decode and encode every frame of every window."""
        windows = []
        for sample_index in batch["indices"]:
            sample = data[sample_index]
            inputs = [{"images": [table[rows[(sample["episode"], f)]]["image"].convert("RGB")],
                       "text": sample["instruction"]} for f in sample["frames"]]
            with torch.no_grad():
                frames = extract(backbone, inputs, spec)
            windows.append(torch.stack([torch.cat([f["visual"].reshape(-1, f["visual"].shape[-1]), f["text"][None]])
                                        for f in frames]))
        return torch.stack(windows)

    def run(mode: str, steps: int) -> float:
        def loss_of(batch: dict, step: int) -> torch.Tensor:
            inputs = dict(batch["inputs"])
            if mode == "on the fly":
                inputs["features"] = encode_on_the_fly(batch)
            return host.call("loss", task=task, config=config, backbone=None, head=head, batch=inputs,
                             step=step, max_steps=steps)["loss"]

        return train_steps_per_second(loader, steps, loss_of, list(head.parameters()), optimizer)

    run("cached", 3)  # warm-up
    run("on the fly", 1)
    rates = best_of_rounds(args.rounds, {"on the fly": lambda: run("on the fly", args.fly_steps),
                                         "cached": lambda: run("cached", args.cached_steps)})
    print(f"train split: {len(data)} windows of {config.task.num_frames} frames, batch {args.batch}, "
          f"{torch.get_num_threads()} torch threads, backbone {config.backbone.name}")
    print(f"data + features (one time, or reused from the cache): {build_s:.1f} s")
    print(f"on the fly: {rates['on the fly']:.3f} steps/s")
    print(f"cached:     {rates['cached']:.2f} steps/s")
    print(f"ratio:      {rates['cached'] / rates['on the fly']:.0f}x")


if __name__ == "__main__":
    main()
