"""The embedded default data: a synthetic ALOHA-like LeRobot v3.0 dataset whose reward is visible.

Each episode moves a coloured block towards a goal pad on a table; some episodes succeed, some stall
half-way. Three cameras see it: ``cam_high`` from above, and the two wrist cameras close-ups that
follow the left and right halves of the table. The reward bin of a frame is the block's distance
to the goal in four bins (0 far ... 3 on the goal), stored one-hot in ``reward_bins`` as in the
real ``realworld_aloha_success_bhc``. The task text names the colours, so several tasks exist.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from qvl.data import settings_fingerprint
from qvl.lerobot import Recording, write_dataset

from qvl_reward.config import SyntheticConfig

CAMERAS = ("observation.images.cam_high", "observation.images.cam_left_wrist", "observation.images.cam_right_wrist")
BIN_EDGES = (0.12, 0.3, 0.5)  # distance to goal (table units): <0.12 -> 3, <0.3 -> 2, <0.5 -> 1, else 0
TASKS = (
    ("red", (210, 40, 40), "green", (40, 180, 70)),
    ("blue", (40, 70, 210), "yellow", (230, 210, 50)),
    ("orange", (240, 140, 30), "purple", (140, 60, 180)),
)


FPS = 10  # of the written videos; in the fingerprint (not a setting)


def summary(settings: SyntheticConfig) -> str:
    """What make-data wrote, in a few words."""
    s = settings
    return f"{s.train_episodes} train + {s.val_episodes} val episodes of {s.frames} frames, 3 cameras, LeRobot v3.0"


def dataset_key(settings: SyntheticConfig, seed: int) -> str:
    """The cache folder's name."""
    return (f"lerobot-reward-synthetic-v3-{settings.train_episodes}-{settings.val_episodes}-{settings.frames}"
            f"-{settings.width}x{settings.height}-s{seed}")


def fingerprint(settings: SyntheticConfig, seed: int) -> dict[str, Any]:
    """What the written data set depends on: every ``task.synthetic`` setting, the seed, the frame rate."""
    return settings_fingerprint(settings, format="lerobot-synthetic-reward", seed=seed, fps=FPS)


def reward_bin(distance: float) -> int:
    return 3 if distance < BIN_EDGES[0] else 2 if distance < BIN_EDGES[1] else 1 if distance < BIN_EDGES[2] else 0


def _render(width: int, height: int, view: tuple[float, float, float, float], table: Any, block: tuple,
            goal: tuple, block_color: tuple, goal_color: tuple, noise: Any) -> Any:
    """One camera: the table region ``view`` = (x0, y0, x1, y1) in table units, drawn to pixels."""
    import numpy as np
    from PIL import Image, ImageDraw

    x0, y0, x1, y1 = view
    image = Image.new("RGB", (width, height), table)
    draw = ImageDraw.Draw(image)

    def px(x: float, y: float) -> tuple[float, float]:
        return (x - x0) / (x1 - x0) * width, (y - y0) / (y1 - y0) * height

    scale = width / (x1 - x0)
    gx, gy = px(*goal)
    r = 0.09 * scale
    draw.ellipse([gx - r, gy - r, gx + r, gy + r], fill=goal_color)
    bx, by = px(*block)
    s = 0.06 * scale
    draw.rectangle([bx - s, by - s, bx + s, by + s], fill=block_color, outline=(20, 20, 20))
    pixels = np.asarray(image).astype(np.float32) + noise
    return np.clip(pixels, 0, 255).astype(np.uint8)


def render_episode(rng: Any, settings: SyntheticConfig) -> Recording:
    import numpy as np

    block_name, block_color, goal_name, goal_color = TASKS[int(rng.integers(len(TASKS)))]
    goal = np.array([rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.7)])
    angle = rng.uniform(0, 2 * math.pi)
    start = goal + rng.uniform(0.55, 0.75) * np.array([math.cos(angle), math.sin(angle)])
    start = np.clip(start, 0.05, 0.95)
    success = rng.random() < 0.6
    reach = 1.0 if success else rng.uniform(0.3, 0.7)
    table = tuple(int(v) for v in rng.integers(90, 160, size=3))
    frames: dict[str, list[Any]] = {camera: [] for camera in CAMERAS}
    bins = []
    for t in range(settings.frames):
        progress = min(1.0, t / (settings.frames * 0.75)) * reach
        progress = progress * progress * (3 - 2 * progress) if success else progress
        block = start + (goal - start) * progress + rng.normal(0, 0.01, size=2)
        distance = float(np.linalg.norm(block - goal))
        one_hot = [0.0] * 4
        one_hot[reward_bin(distance)] = 1.0
        bins.append(one_hot)
        noise = rng.normal(0, 5, size=(settings.height, settings.width, 3))
        views = {
            CAMERAS[0]: (0.0, 0.0, 1.0, 1.0),
            CAMERAS[1]: (block[0] - 0.35, block[1] - 0.25, block[0] + 0.35, block[1] + 0.25),
            CAMERAS[2]: (goal[0] - 0.35, goal[1] - 0.25, goal[0] + 0.35, goal[1] + 0.25),
        }
        for camera, view in views.items():
            frames[camera].append(_render(settings.width, settings.height, view, table, tuple(block), tuple(goal),
                                          block_color, goal_color, noise))
    task = f"move the {block_name} block onto the {goal_name} pad"
    return Recording(task=task, frames=frames, columns={"reward_bins": bins})


def render_episodes(settings: SyntheticConfig, seed: int, *, progress: bool = False) -> list[Recording]:
    """The train episodes, then the val episodes, each split from its own random stream.

    The val episodes do not depend on ``train_episodes`` (v2 drew them after the train episodes from
    one stream, so another train size held out other episodes): runs with more or fewer training
    episodes are measured on the same held-out episodes. The train stream is v2's, so the first
    ``train_episodes`` episodes are v2's train episodes.
    """
    import numpy as np
    from tqdm.auto import tqdm

    streams = [(np.random.default_rng(seed), settings.train_episodes),
               (np.random.default_rng([seed, 1]), settings.val_episodes)]
    bar = tqdm(total=settings.train_episodes + settings.val_episodes, desc="reward make-data", unit="episode",
               disable=not progress, dynamic_ncols=True)
    recordings = []
    for rng, count in streams:
        for _ in range(count):
            recordings.append(render_episode(rng, settings))
            bar.update()
    bar.close()
    return recordings


def write_synthetic(root: Path, settings: SyntheticConfig, seed: int, *, progress: bool = True) -> Path:
    """Write ``task.synthetic``'s episodes with the run's ``seed`` into ``root`` (LeRobot v3.0)."""
    recordings = render_episodes(settings, seed, progress=progress)
    total = settings.train_episodes + settings.val_episodes
    splits = {"train": f"0:{settings.train_episodes}", "val": f"{settings.train_episodes}:{total}"}
    return write_dataset(root, recordings, FPS, version="v3.0", splits=splits, episodes_per_file=16)
