"""The segment task's one-pass inference against two separate passes.

Run: .venv/bin/python benchmarks/bench_segment_onepass.py [--run-dir RUN] [--episodes 16] [--batch-size 8]

* one pass (``qvl_segment.inference.decode_batch``): one prefill gives the heads' features and the
  KV cache the constrained JSON is generated from;
* two passes (``decode_two_pass``), what a plain script does: a forward for the heads, then a
  separate ``generate`` over the same prompt (the vision tower and the prompt run twice).

Both produce the same predictions (checked here, and in plugins/segment/tests/test_inference.py).
With ``--run-dir`` the trained model of that run is used (its best checkpoint), else the untrained
embedded model (whose answers are longer: it spells ``<FRAME>`` out character by character).
Prints seconds per batch of each and the ratio. What one pass saves is one prefill (the vision tower
and the prompt): a small share at the default 64x64 frames, where generating the answer dominates. Nothing else should run on the machine meanwhile.
"""

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace


def load_model(run_dir: str | None):
    import torch

    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig
    from qvl_segment.config import SegmentConfig
    from qvl_segment.heads import SegmentHeads
    from qvl_segment.tokens import add_frame_token

    task = SegmentConfig()
    if run_dir is None:
        backbone = load(BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="frozen"), prepare=add_frame_token)
        torch.manual_seed(0)
        heads = SegmentHeads(backbone.hidden_size, task.head_channels, task.head_layers, task.k_max)
        return backbone, heads.eval(), task
    from safetensors.torch import load_file

    checkpoint = Path(run_dir) / "checkpoints" / "best"
    if not checkpoint.is_dir():
        checkpoint = max((Path(run_dir) / "checkpoints").glob("step-*"))
    backbone = load(BackboneConfig(name=str(checkpoint / "backbone"), finetune="frozen"), prepare=add_frame_token)
    heads = SegmentHeads(backbone.hidden_size, task.head_channels, task.head_layers, task.k_max)
    heads.load_state_dict(load_file(str(checkpoint / "head.safetensors")))
    return backbone, heads.eval(), task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=None)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--image-size", type=int, default=64,
                        help="frame side in pixels (the trained default is 64; larger frames make the prefill, "
                             "which one pass saves, a larger share)")
    args = parser.parse_args()

    import torch

    from qvl_segment.collate import SegmentCollator
    from qvl_segment.episodes import read_episodes
    from qvl_segment.inference import decode_batch, decode_two_pass
    from qvl_segment.synthetic import SKILLS, SyntheticSettings, write_dataset

    backbone, heads, task = load_model(args.run_dir)
    task.max_new_tokens = args.max_new_tokens
    task.image_size = [args.image_size, args.image_size]
    config = SimpleNamespace(task=task)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(Path(tmp), SyntheticSettings(episodes=args.episodes), seed=123)
        episodes = read_episodes(Path(tmp) / "episodes.jsonl")
        collate = SegmentCollator(config, backbone.processor, "eval")
        batches = [collate([{"episode": e} for e in episodes[i:i + args.batch_size]])
                   for i in range(0, len(episodes), args.batch_size)]
    timings = {}
    outputs = {}
    with torch.no_grad():
        decode_batch(config, backbone, heads, batches[0], list(SKILLS))  # warm-up: grammar compilation
        for name, decode in (("one pass", decode_batch), ("two passes", decode_two_pass)):
            start = time.perf_counter()
            outputs[name] = [p for batch in batches for p in decode(config, backbone, heads, batch, list(SKILLS))]
            timings[name] = (time.perf_counter() - start) / len(batches)
    same = [p["text"] for p in outputs["one pass"]] == [p["text"] for p in outputs["two passes"]]
    tokens = sum(len(backbone.tokenizer.encode(p["text"] or "")) for p in outputs["one pass"]) / len(episodes)
    print(f"{len(episodes)} episodes, batch {args.batch_size}, T = {task.num_frames} frames of {args.image_size} px, "
          f"{tokens:.0f} answer tokens per episode; same predictions: {same}")
    for name, seconds in timings.items():
        print(f"  {name:>10}: {seconds:.3f} s per batch")
    print(f"  two passes / one pass: {timings['two passes'] / timings['one pass']:.2f}x")


if __name__ == "__main__":
    main()
