"""The vqa data path: batches per second through qvl against the seed's collate.

Run: .venv/bin/python benchmarks/bench_vqa_data.py [--batches 30] [--batch-size 8] [--workers 0 1 2]

A trajectory store like the seed's (224x224 frames, 64-96 per trajectory, uncompressed .npz, about
10-15 MB a file) and generated rows (twice what the batches read: 512 by default; preference /
progress as 0.7 / 0.3, 8 frames a video).
Both sides make the same answer-only SFT batches with the same processor (frames resized to
64x64 for the tiny backbone); no model runs, so this is the data path alone:

* seed-style: the seed's collator in the main process: each referenced ``.npz`` loaded whole
  (``np.load(path)["frames"]``), subsampled to the row's indices, converted to PIL images, tokenized;
* qvl: ``VqaSamples`` (only the indexed frames are read from each file) and ``TrainCollator``
  through a DataLoader, with each --workers value (0 = the main process).

Prints samples/s of each and the ratio qvl / seed-style (goal >= 2x at equal batch).
Nothing else should run on the machine meanwhile.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def build(root: Path, rows: int) -> tuple[Path, object]:
    from qvl_vqa.config import SyntheticConfig, VqaConfig
    from qvl_vqa.generation import build_vqa_dataset
    from qvl_vqa.store_formats import open_store
    from qvl_vqa.synthetic import write_store

    store_dir = root / "store"
    store_dir.mkdir()
    spec = SyntheticConfig(tasks=4, trajectories_per_task=6, min_frames=64, max_frames=96, size=224,
                           lerobot_copy=False)
    write_store(store_dir, spec, seed=0)
    store = open_store(store_dir)
    task = VqaConfig(num_samples=rows, max_frames=8, val_fraction=0.0, test_fraction=0.0)
    dataset = build_vqa_dataset(root / "vqa", store.trajectories, task, 0, str(store.root), store.fingerprint,
                                progress=False)
    return dataset, store


def seed_style(dataset: Path, store, processor, config, batches: int, batch_size: int) -> float:
    """samples/s of the seed's collate: whole files loaded and converted in the main process."""
    from datasets import load_from_disk
    from PIL import Image

    from qvl import chat

    rows = load_from_disk(str(dataset))["train"]
    width, height = config.image_size

    def frames(path: str, indices: list[int]) -> list:
        array = np.load(store.root / path)["frames"]  # the seed's load_frames_from_npz
        return [Image.fromarray(array[i]) for i in indices]

    def clip(path, indices):
        return {"type": "video", "video": frames(path, indices), "resized_width": width, "resized_height": height}

    start = time.perf_counter()
    for b in range(batches):
        conversations = []
        for row in rows.select(range(b * batch_size, (b + 1) * batch_size)):
            if row["sample_type"] == "preference":
                content = [{"type": "text", "text": "Video 1:"}, clip(row["first_npz_path"], row["first_frame_indices"]),
                           {"type": "text", "text": "Video 2:"}, clip(row["second_npz_path"], row["second_frame_indices"])]
            else:
                content = [clip(row["npz_path"], row["frame_indices"])]
            content.append({"type": "text", "text": row["prompt"]})
            conversations.append([{"role": "user", "content": content}, {"role": "assistant", "content": row["answer"]}])
        chat.sft_batch(processor, conversations)
    return batches * batch_size / (time.perf_counter() - start)


def through_qvl(dataset: Path, store, processor, config, batches: int, batch_size: int, workers: int) -> float:
    import torch

    from qvl.runner.modules import CollateWithIds, IndexedSamples
    from qvl_vqa.collate import TrainCollator
    from qvl_vqa.samples import VqaSamples

    samples = VqaSamples(dataset, "train", store)
    # what the runner hands its DataLoader: (index, sample) pairs, the task's collator wrapped
    samples = IndexedSamples(samples, range(len(samples)))
    loader = torch.utils.data.DataLoader(samples, batch_size=batch_size, shuffle=False, num_workers=workers,
                                         collate_fn=CollateWithIds(TrainCollator(config, processor)),
                                         persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    iterator = iter(loader)
    next(iterator)  # worker start-up is paid once per run, not per batch
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()

    import torch

    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig
    from qvl_vqa.config import VqaConfig

    torch.set_num_threads(1)
    processor = load(BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="frozen")).processor
    config = VqaConfig()
    with tempfile.TemporaryDirectory() as tmp:
        dataset, store = build(Path(tmp), rows=(args.batches + 2) * args.batch_size * 2)
        sizes = [p.stat().st_size for p in (store.root / "frames").glob("*.npz")]
        print(f"store: {len(sizes)} trajectories, .npz of {np.mean(sizes) / 1e6:.1f} MB on average; "
              f"batch {args.batch_size}, {args.batches} batches")
        plain = seed_style(dataset, store, processor, config, args.batches, args.batch_size)
        print(f"seed-style collate (main process, whole files): {plain:7.1f} samples/s")
        for workers in args.workers:
            ours = through_qvl(dataset, store, processor, config, args.batches, args.batch_size, workers)
            print(f"qvl, {workers} worker(s) (indexed frames only):    {ours:7.1f} samples/s   "
                  f"{ours / plain:.2f}x seed-style")


if __name__ == "__main__":
    main()
