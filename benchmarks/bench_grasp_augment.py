"""Grasp augmentation: PIL per image (what qvl-grasp does) against one batched torch op per batch.

Run: .venv/bin/python benchmarks/bench_grasp_augment.py [--batch 8] [--rounds 50]

The data-path issue asked for augmentation as vectorised tensor ops on the cached arrays. This
benchmark keeps that implementation (below: one ``grid_sample`` turns the batch, one 3x3 colour
matrix per image does brightness, contrast and saturation in one pass) and times it against
``qvl_grasp.augment.augment_sample`` on the working copies of the default data (twice the model's
input size), with the same drawn parameters, on this process's torch threads. It also prints how
far the two images are apart (PIL truncates and clips after each colour step, the batch path once).
On the 2-core CPU this was written on (batch 8, 192x144): with one torch thread, as in a DataLoader
worker, PIL was 1.6-1.8x faster for the colours and 1.3-1.4x for colours + rotation; with two
threads the batch path was 1.0-1.2x slower for the colours and 1.2-1.4x faster with rotation
(which the default config turns off). The collator runs on the CPU even on a GPU machine, in
workers, so qvl-grasp keeps PIL.
"""

import argparse
import time

import numpy as np
import torch

from qvl_grasp.augment import AugmentConfig, augment_sample
from qvl_grasp.synthetic import render_scene


def draw(rng, config):
    """The parameters augment_sample draws, in its order: rotation, brightness, contrast, saturation."""
    degrees = float(rng.uniform(-config.rotation_degrees, config.rotation_degrees)) if config.rotation_degrees else 0.0
    return (degrees, *[float(rng.uniform(1 - a, 1 + a)) if a > 0 else 1.0
                       for a in (config.brightness, config.contrast, config.saturation)])


def rotation_grid(degrees: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[B, H, W, 2]``: where each output pixel's centre was before a counter-clockwise turn (as seen)."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                            torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    dx, dy = xs - width / 2, ys - height / 2
    radians = torch.deg2rad(degrees)[:, None, None]
    cos, sin = radians.cos(), radians.sin()
    source_x = width / 2 + dx * cos - dy * sin
    source_y = height / 2 + dx * sin + dy * cos
    return torch.stack([source_x * 2 / width - 1, source_y * 2 / height - 1], dim=-1)


LUMA = torch.tensor([0.299, 0.587, 0.114])  # PIL's "L"


def augment_batch(images: list[np.ndarray], draws: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Same-sized ``[H, W, 3]`` uint8 images, turned and colour-changed as one tensor batch.

    Colours: brightness b, contrast c, saturation s compose into one affine map per image,
    ``c b S x + (1 - c) b m`` with S = s I + (1 - s) 1 w^T (w the luma weights, m the mean grey).
    """
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().contiguous()
    degrees, b, c, s = (torch.tensor(column, dtype=torch.float32) for column in zip(*draws))
    height, width = batch.shape[2:]
    if bool((degrees != 0).any()):
        fill = batch.mean(dim=(2, 3), keepdim=True).round()
        covered = torch.ones_like(batch[:, :1])
        sampled = torch.nn.functional.grid_sample(torch.cat([batch, covered], 1), rotation_grid(degrees, height, width),
                                                  mode="bilinear", padding_mode="zeros", align_corners=False)
        batch = sampled[:, :3] + (1 - sampled[:, 3:]) * fill
    b, c, s = b[:, None, None], c[:, None, None], s[:, None, None]
    matrix = c * b * (s * torch.eye(3) + (1 - s) * torch.ones(3, 1) * LUMA)
    offset = ((1 - c) * b)[:, 0, 0] * torch.einsum("bchw,c->b", batch, LUMA) / (height * width)
    out = torch.empty_like(batch)
    for row in range(3):
        plane = batch[:, 0] * matrix[:, row, 0, None, None] + offset[:, None, None]
        plane += batch[:, 1] * matrix[:, row, 1, None, None]
        plane += batch[:, 2] * matrix[:, row, 2, None, None]
        out[:, row] = plane
    return out.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    from PIL import Image

    rng = np.random.default_rng(0)
    # the default data's working copies: 640x480 scaled to twice the model's 96x64 input
    scenes = [render_scene(rng, 640, 480) for _ in range(args.batch)]
    pictures = [image.resize((192, 144), Image.BILINEAR) for image, _, _ in scenes]
    arrays = [np.asarray(picture) for picture in pictures]
    print(f"batch of {args.batch} images {arrays[0].shape[1]}x{arrays[0].shape[0]}, "
          f"{torch.get_num_threads()} torch threads")
    for degrees in (0.0, 15.0):
        config = AugmentConfig(rotation_degrees=degrees)
        timings = {}
        for name in ("pil", "tensor"):
            draws_rng = np.random.default_rng(1)
            start = time.perf_counter()
            for _ in range(args.rounds):
                if name == "pil":
                    pil = [np.asarray(augment_sample(p, grasps, draws_rng, config)[0])
                           for p, (_, _, grasps) in zip(pictures, scenes)]
                else:
                    tensor = augment_batch(arrays, [draw(draws_rng, config) for _ in arrays])
            timings[name] = (time.perf_counter() - start) / args.rounds * 1000
        gap = np.abs(np.stack(pil).astype(np.int16) - tensor.astype(np.int16))  # same draws: the last round's
        print(f"rotation +-{degrees:g} deg: PIL per image {timings['pil']:.2f} ms/batch, batched tensor "
              f"{timings['tensor']:.2f} ms/batch, PIL {timings['tensor'] / timings['pil']:.2f}x faster; "
              f"pixels apart: mean {gap.mean():.2f}, 95th percentile {np.percentile(gap, 95):.0f} levels")


if __name__ == "__main__":
    main()
