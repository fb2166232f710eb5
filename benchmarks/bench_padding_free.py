"""vqa training steps, padded against padding-free (``train.padding_free``), at the default batch.

Run: .venv/bin/python benchmarks/bench_padding_free.py [--batches 12] [--rounds 3] [--steps 12]

Batches as the default ``qvl run vqa train`` makes them (the vqa defaults.toml task settings: half
preference rows with two clips, half progress rows with one, four frames a clip, question first), on
a synthetic trajectory store; collated once beforehand, so that this measures the step, not the
data path. Each step is the vqa loss (answer-vocabulary cross-entropy, full finetune with the token
embedding frozen), backward, clipping and AdamW, as the runner does; the padded and the padding-free
step alternate over rounds and the best round of each counts. Prints the padding's share of the
batch, the real (non-padding) tokens/s of each and the ratio (issue 29's goal: >= 1.4x).
Nothing else should run on the machine meanwhile.
"""

import argparse
import tempfile
import tomllib
from pathlib import Path

from timing import best_of_rounds, train_steps_per_second


def vqa_batches(root: Path, batches: int, batch_size: int, processor) -> list[dict]:
    import qvl_vqa
    from qvl_vqa.collate import TrainCollator
    from qvl_vqa.config import SyntheticConfig, VqaConfig
    from qvl_vqa.generation import build_vqa_dataset
    from qvl_vqa.samples import VqaSamples
    from qvl_vqa.store_formats import open_store
    from qvl_vqa.synthetic import write_store

    defaults = tomllib.loads((Path(qvl_vqa.__file__).parent / "defaults.toml").read_text())["task"]
    store_dir = root / "store"
    store_dir.mkdir()
    write_store(store_dir, SyntheticConfig(tasks=4, trajectories_per_task=8, lerobot_copy=False), seed=0)
    store = open_store(store_dir)
    config = VqaConfig(num_samples=batches * batch_size, max_frames=defaults["max_frames"],
                       sample_type_ratio=defaults["sample_type_ratio"], question_first=defaults["question_first"],
                       val_fraction=0.0, test_fraction=0.0)
    dataset = build_vqa_dataset(root / "vqa", store.trajectories, config, 0, str(store.root), store.fingerprint,
                                progress=False)
    samples = VqaSamples(dataset, "train", store)
    collate = TrainCollator(config, processor)
    return [collate([samples[i] for i in range(b * batch_size, (b + 1) * batch_size)]) for b in range(batches)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backbone", default="embedded:qwen3-vl-tiny")
    args = parser.parse_args()

    import torch

    from qvl import chat
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig
    from qvl_vqa.answers import answer_token_ids

    torch.manual_seed(0)
    backbone = load(BackboneConfig(name=args.backbone, finetune="full", freeze_embeddings=True))
    with tempfile.TemporaryDirectory() as tmp:
        batches = vqa_batches(Path(tmp), args.batches, args.batch_size, backbone.processor)
    real = sum(int(b["attention_mask"].sum()) for b in batches) / len(batches)
    width = sum(b["attention_mask"].numel() for b in batches) / len(batches)
    tokens = answer_token_ids(backbone.tokenizer)
    parameters = [p for p in backbone.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=1e-5)

    def rate(padding_free: bool) -> float:
        def loss_of(batch, step):
            return chat.answer_vocabulary_loss(backbone.model, batch, tokens, padding_free=padding_free)["loss"]
        return train_steps_per_second(batches, args.steps, loss_of, parameters, optimizer) * real

    best = best_of_rounds(args.rounds, {"padded": lambda: rate(False), "padding-free": lambda: rate(True)})
    print(f"vqa batch {args.batch_size}: {real:.0f} real tokens in {width:.0f} padded "
          f"(padding {1 - real / width:.0%} of the batch), {torch.get_num_threads()} threads")
    for name, value in best.items():
        print(f"{name:13s} {value:8.0f} real tokens/s")
    print(f"padding-free / padded: {best['padding-free'] / best['padded']:.2f}x")


if __name__ == "__main__":
    main()
