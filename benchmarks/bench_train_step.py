"""Tiny-backbone figures on this machine: load time, train steps/s, forward-only ratio.

Run: .venv/bin/python benchmarks/bench_train_step.py [--backbone embedded:qwen3-vl-tiny] [--batch 8]
On a GPU, --backbone preset:qwen3-vl-2b --finetune lora measures a real-size model (random weights).
"""

import argparse
import time

import torch
from timing import seconds_per_call


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="embedded:qwen3-vl-tiny")
    parser.add_argument("--finetune", default="full", choices=["full", "lora", "qlora", "frozen"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()

    from qvl import chat
    from qvl.backbone.embedded import resolve
    from qvl.backbone.loading import load
    from qvl.builtin.colors import ColorsConfig, conversation, synthetic_split
    from qvl.config import BackboneConfig

    resolve(args.backbone)  # materialise outside the timing
    start = time.perf_counter()
    backbone = load(BackboneConfig(name=args.backbone, finetune=args.finetune))
    load_s = time.perf_counter() - start
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not backbone.quantized:
        backbone.model.to(device)
    config = ColorsConfig(image_size=args.image_size, train_samples=args.batch)
    samples = synthetic_split(config, "train", seed=0)
    start = time.perf_counter()
    batch = chat.sft_batch(backbone.processor, [conversation(config, s, with_answer=True) for s in samples])
    collate_s = time.perf_counter() - start
    batch = {k: v.to(device) for k, v in batch.items()}
    trainable = [p for p in backbone.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")

    def step() -> None:
        with autocast:
            loss = backbone.model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def forward() -> None:
        with torch.no_grad(), autocast:
            backbone.model(**batch)

    step_s = seconds_per_call(step, args.steps, warmup=3, device=device)
    forward_s = seconds_per_call(forward, args.steps, warmup=3, device=device)
    trainable_n, total_n = backbone.trainable_parameters()
    print(f"backbone            {args.backbone} ({args.finetune}, {total_n / 1e6:.1f} M params, "
          f"{trainable_n / 1e6:.1f} M trainable) on {device} with {torch.get_num_threads()} threads")
    print(f"load                {load_s:8.2f} s")
    print(f"collate batch {args.batch:<5} {collate_s * 1000:8.1f} ms  ({args.batch / collate_s:.0f} samples/s)")
    print(f"train step          {step_s * 1000:8.1f} ms  = {1 / step_s:.2f} steps/s, {args.batch / step_s:.1f} samples/s")
    print(f"forward only        {forward_s * 1000:8.1f} ms  ratio train/forward {step_s / forward_s:.2f}x")
    if device == "cuda":
        print(f"peak GPU memory     {torch.cuda.max_memory_allocated() / 2**30:8.2f} GiB")


if __name__ == "__main__":
    main()
