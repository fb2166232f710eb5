"""A linear head trained from cached features vs the same head running the frozen backbone each step.

Run: .venv/bin/python benchmarks/bench_features.py [--backbone embedded:qwen3-vl-tiny] [--batch 8] [--images 64]
Each rate is the best of a few alternating rounds (the machines are shared). Also prints what
stopping the forward after the wanted layer saves against a full forward with
``output_hidden_states=True``. The cache is built in a temporary folder, so nothing is reused
between runs of the benchmark.
"""

import argparse
import tempfile
import time

import torch
from PIL import Image
from timing import best_of_rounds, seconds_per_call

COLORS = ["red", "green", "blue", "yellow"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="embedded:qwen3-vl-tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig
    from qvl.features import FeatureCache, FeatureSpec, extract, hidden_states_at, resolve_layer, tokenize

    backbone = load(BackboneConfig(name=args.backbone, finetune="frozen"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    backbone.model.to(device)
    spec = FeatureSpec(pooling="mean", image_size=args.image_size, prompt="What colour is this? {text}")
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, len(COLORS), (args.images,), generator=generator)
    images = {str(i): Image.new("RGB", (args.image_size, args.image_size), COLORS[int(label)])
              for i, label in enumerate(labels)}
    ids = list(images)

    def make_inputs(batch_ids):
        return [{"images": [images[i]]} for i in batch_ids]

    head = torch.nn.Linear(backbone.hidden_size, len(COLORS)).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=1e-3)

    def train(features: torch.Tensor, batch_ids: list[str]) -> None:
        target = labels[[int(i) for i in batch_ids]].to(device)
        loss = torch.nn.functional.cross_entropy(head(features.to(device)), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def batches():
        order = torch.randperm(len(ids), generator=generator).tolist()
        while True:
            for start in range(0, len(order) - args.batch + 1, args.batch):
                yield [ids[i] for i in order[start:start + args.batch]]

    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        store = FeatureCache(backbone, spec, root=root).build(ids, make_inputs, batch_size=args.batch,
                                                              progress=False)
        build_s = time.perf_counter() - start

        def cached_step(batch_ids):
            train(torch.cat([store[i]["visual"] for i in batch_ids]), batch_ids)

        def live_step(batch_ids):
            features = extract(backbone, make_inputs(batch_ids), spec)
            train(torch.cat([sample["visual"] for sample in features]), batch_ids)

        def rate(step, steps):
            stream = batches()
            return 1 / seconds_per_call(lambda: step(next(stream)), steps, warmup=3, device=device)

        rates = best_of_rounds(args.rounds, {"cached": lambda: rate(cached_step, args.steps * 10),
                                             "live": lambda: rate(live_step, args.steps)})
        cached, live = rates["cached"], rates["live"]

    batch = tokenize(backbone, make_inputs(ids[:args.batch]), spec)
    batch = {key: value.to(device) for key, value in batch.items()}
    layer = resolve_layer(backbone, spec.layer)

    def timed(fn):
        return seconds_per_call(fn, args.steps, warmup=1, device=device)

    def full_forward():
        with torch.no_grad():
            backbone.model(**batch, output_hidden_states=True)

    early_s = min(timed(lambda: hidden_states_at(backbone, batch, layer)) for _ in range(args.rounds))
    full_s = min(timed(full_forward) for _ in range(args.rounds))

    print(f"backbone            {args.backbone} on {device} with {torch.get_num_threads()} threads, "
          f"{args.images} images of {args.image_size} px, batch {args.batch}, layer {layer}, mean pooling")
    print(f"cache build         {build_s:8.2f} s  ({args.images / build_s:.1f} images/s)")
    print(f"cached features     {cached:8.1f} steps/s  (best of {args.rounds} rounds)")
    print(f"backbone each step  {live:8.1f} steps/s  (best of {args.rounds} rounds)")
    print(f"ratio               {cached / live:8.1f}x")
    print(f"forward to layer {layer}  {early_s * 1000:8.1f} ms vs full forward with output_hidden_states "
          f"{full_s * 1000:.1f} ms ({full_s / early_s:.1f}x)")


if __name__ == "__main__":
    main()
