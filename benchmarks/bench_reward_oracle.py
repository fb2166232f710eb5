"""Is the synthetic reward task decidable from the frames the model sees? An oracle from pixels.

Run: .venv/bin/python benchmarks/bench_reward_oracle.py [--splits train,val] [--set KEY=VALUE ...]

1. **Labels vs the generator's state.** The episodes are generated again with the data set's seed,
   recording the block-to-goal distance of every frame (``synthetic.reward_bin`` is wrapped); each
   stored label must equal the bin of that distance (no label noise by construction).
2. **A pixel oracle.** From the *decoded* frames, resized to ``task.image_size`` as the model gets
   them, the block and the goal pad are found by their colour (the task text names the colours):
   the goal camera (``cam_right_wrist``) is centred on the goal, so when the block is fully in its
   view the block's offset from the image centre is the block-goal vector at 137 px per table unit;
   otherwise the top view (``cam_high``, 96 px per unit) gives both centroids. Binning that
   distance with the generator's edges is a hand-written reader of the same pixels: its accuracy is
   a lower bound on the best accuracy any model can reach from these frames.
3. **Ambiguity near bin edges**: how many frames lie within one top-view pixel (1/64 table unit)
   of a bin edge, the only frames whose bin the pixels can leave undecided.
"""

import argparse
import math
from collections import Counter

import numpy as np


def state_distances(settings, seed):
    """The generator's true block-goal distance of every frame, episode by episode (same rng)."""
    from qvl_reward import synthetic

    original = synthetic.reward_bin
    seen: list[float] = []  # one distance per frame, episodes in order

    def recording(distance: float) -> int:
        seen.append(distance)
        return original(distance)

    synthetic.reward_bin = recording
    try:
        synthetic.render_episodes(settings, seed)
    finally:
        synthetic.reward_bin = original
    return [seen[i * settings.frames:(i + 1) * settings.frames]
            for i in range(settings.train_episodes + settings.val_episodes)]


def centroid(image: np.ndarray, colour, others) -> tuple[float, float, int] | None:
    """Centroid (x, y) and pixel count of the pixels nearer to ``colour`` than to every colour in ``others``."""
    pixels = image.astype(np.float32)
    target = np.linalg.norm(pixels - np.array(colour, np.float32), axis=-1)
    nearest = np.min([np.linalg.norm(pixels - np.array(o, np.float32), axis=-1) for o in others], axis=0)
    mask = (target < nearest) & (target < 60)
    if mask.sum() < 3:
        return None
    ys, xs = np.nonzero(mask)
    return float(xs.mean()) + 0.5, float(ys.mean()) + 0.5, int(mask.sum())


def pixel_distance(images: list[np.ndarray], block_colour, goal_colour) -> float:
    """Block-goal distance in table units read from the three decoded camera images."""
    top, _, goal_cam = images
    h, w = top.shape[:2]
    table = tuple(np.median(top.reshape(-1, 3), axis=0))
    outline = (20, 20, 20)
    # goal camera: centred on the goal, 0.7 x 0.5 table units; the block (0.12 units, ~16 px) fully in view
    found = centroid(goal_cam, block_colour, [table, goal_colour, outline])
    gh, gw = goal_cam.shape[:2]
    if found is not None and found[2] > 0.6 * (0.12 * gw / 0.7) * (0.12 * gh / 0.5):
        x, y, _ = found
        if 0.06 * gw / 0.7 + 1 < x < gw - 0.06 * gw / 0.7 - 1 and 0.06 * gh / 0.5 + 1 < y < gh - 0.06 * gh / 0.5 - 1:
            return math.hypot((x - gw / 2) / gw * 0.7, (y - gh / 2) / gh * 0.5)
    block = centroid(top, block_colour, [table, goal_colour, outline])
    goal = centroid(top, goal_colour, [table, block_colour, outline])
    if block is None or goal is None:
        return float("nan")
    return math.hypot((block[0] - goal[0]) / w, (block[1] - goal[1]) / h)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--splits", default="val", help="comma-separated, e.g. train,val")
    args = parser.parse_args()

    from qvl.config import load_config
    from qvl.plugins import load_plugins
    from qvl_reward.data import split_frames
    from qvl_reward.report import classification_metrics
    from qvl_reward.synthetic import BIN_EDGES, TASKS, reward_bin

    host = load_plugins()
    config = load_config(host.task("reward"), [], args.overrides)
    distances = state_distances(config.task.synthetic, config.seed)
    size = tuple(config.task.image_size)
    colours = {f"move the {b} block onto the {g} pad": (bc, gc) for b, bc, g, gc in TASKS}
    edge_px = 1 / 64  # one top-view pixel along y, the coarser axis
    for split in args.splits.split(","):
        frames = split_frames(config, split)
        truth, oracle, near_edge, mismatched = [], [], 0, 0
        errors = Counter()
        for index, ref in enumerate(frames.refs):
            true_distance = distances[ref.episode][ref.frame]
            mismatched += reward_bin(true_distance) != ref.label
            near_edge += min(abs(true_distance - e) for e in BIN_EDGES) < edge_px
            images = [np.asarray(im.convert("RGB").resize(size)) for im in frames.images(ref)]
            block_colour, goal_colour = colours[ref.task.removeprefix("Task: ")]
            measured = pixel_distance(images, block_colour, goal_colour)
            predicted = reward_bin(measured) if not math.isnan(measured) else 0
            truth.append(ref.label)
            oracle.append(predicted)
            if predicted != ref.label:
                errors[(ref.label, predicted, round(min(abs(true_distance - e) for e in BIN_EDGES) * 64, 1))] += 1
        metrics = classification_metrics(truth, oracle, 4)
        print(f"{split}: {len(truth)} frames; labels != bin(true distance): {mismatched}; "
              f"within 1 px (1/64 unit) of a bin edge: {near_edge} ({near_edge / len(truth):.3f}); "
              f"class counts {sorted(Counter(truth).items())}")
        print(f"  pixel oracle: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}, "
              f"confusion {metrics['confusion_matrix']}")
        print(f"  oracle errors (true, predicted, distance to the nearest edge in top-view px): "
              f"{sorted(errors.items())}")


if __name__ == "__main__":
    main()
