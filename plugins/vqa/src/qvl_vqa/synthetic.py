"""The embedded trajectory store (``qvl run vqa make-data``): progress you can see in the pixels.

Each task is its own scene: a block of the task's colour moved from a start position towards the
task's goal zone (an outlined region). At frame ``i`` the block is exactly ``Trajectory.progress(i)``
of the way along the start -> goal path: a successful trajectory reaches the goal at its last
frame, a suboptimal one stops part-way (``partial_success`` uniform in [0.3, 0.7]), a failure
wanders sideways near the start without getting closer. Background shade, start position,
sideways wobble, a distractor and pixel noise vary per trajectory, so the block has to be found.

Written as format A (``trajectories.jsonl`` + ``frames/<id>.npz``) and, when asked, as a LeRobot
v3.0 copy under ``lerobot/`` (camera ``observation.images.main``, a per-frame ``progress`` column).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
from qvl.data import digest, settings_fingerprint
from qvl.errors import UserError

from qvl_vqa.config import QUALITY_LABELS, SyntheticConfig
from qvl_vqa.npz_store import DEFAULT_TABLE
from qvl_vqa.trajectory import Trajectory

VERSION = 3  # bump when what is written changes: it keys the cached store
CAMERA = "observation.images.main"
DATA_SOURCE = "synthetic"
BLOCK = 0.15  # half the block's side, in frame widths (19 px at 64 px): it spans token boundaries
ZONE = 0.2  # half the goal zone's side: the block fits inside it
SUBOPTIMAL_RANGE = (0.3, 0.7)


@attrs.frozen
class Scene:
    """One task: its text, colours and the block's path (x, y in frame widths, y down)."""

    task: str
    block: tuple[int, int, int]
    zone: tuple[int, int, int]
    start: tuple[float, float]
    goal: tuple[float, float]
    shelf: bool = False  # a shelf bar under the goal zone


SCENES = (
    Scene("push the red block to the green zone", (225, 35, 35), (40, 190, 70), (0.22, 0.6), (0.78, 0.6)),
    Scene("lift the blue block to the top shelf", (40, 80, 235), (235, 235, 235), (0.5, 0.8), (0.5, 0.22),
          shelf=True),
    Scene("slide the yellow block to the purple zone", (240, 220, 30), (160, 50, 210), (0.78, 0.3), (0.22, 0.3)),
    Scene("lower the orange block into the cyan bin", (250, 140, 20), (30, 200, 225), (0.28, 0.2), (0.28, 0.8)),
    Scene("push the magenta block to the white corner", (235, 40, 205), (240, 240, 240), (0.22, 0.22),
          (0.78, 0.78)),
    Scene("move the green block to the red zone", (40, 200, 60), (225, 35, 35), (0.78, 0.78), (0.22, 0.22)),
)
# distractors are muted (channel spread <= 60), so no saturated block colour is mistaken for one
DISTRACTORS = ((125, 95, 65), (95, 115, 95), (105, 105, 140), (150, 130, 110), (70, 70, 70), (160, 160, 150))


def fingerprint(spec: SyntheticConfig, seed: int) -> dict[str, Any]:
    """Everything the written store depends on."""
    return settings_fingerprint(spec, format="vqa-synthetic-store", version=VERSION, seed=seed)


def store_key(spec: SyntheticConfig, seed: int) -> str:
    """The cache folder name: readable settings plus a digest of all of them."""
    return (f"vqa-synthetic-v{VERSION}-{spec.tasks}x{spec.trajectories_per_task}-{spec.size}px-s{seed}-"
            f"{digest(fingerprint(spec, seed), 10, algorithm='sha1')}")


def synthetic_data(spec: SyntheticConfig, seed: int) -> Any:
    """The :class:`qvl.build.SyntheticData` that writes this store once into qvl's cache."""
    from qvl.build import SyntheticData

    return SyntheticData(key=store_key(spec, seed), fingerprint=fingerprint(spec, seed),
                         write=lambda out: write_store(out, spec, seed), plugin="qvl-vqa",
                         description="the synthetic trajectory store")


def _check(spec: SyntheticConfig) -> None:
    if spec.min_frames < 2 or spec.min_frames > spec.max_frames:
        raise UserError(f"task.synthetic: min_frames {spec.min_frames}, max_frames {spec.max_frames}; expected "
                        "2 <= min_frames <= max_frames")
    mix = list(spec.quality_mix)
    if len(mix) != len(QUALITY_LABELS) or any(w < 0 for w in mix) or sum(mix) <= 0:
        raise UserError(f"task.synthetic.quality_mix {mix}; expected three weights >= 0 for "
                        f"{list(QUALITY_LABELS)} with a positive sum")
    if spec.size < 32:
        raise UserError(f"task.synthetic.size {spec.size}; expected at least 32 pixels")
    if spec.lerobot_copy and spec.size % 2:
        raise UserError(f"task.synthetic.size {spec.size}: the LeRobot copy's H.264 video needs an even size "
                        "(or set lerobot_copy = false)")


def quality_counts(n: int, mix: list[float]) -> list[int]:
    """``n`` split by the weights ``mix`` (largest remainders), per quality label."""
    shares = [n * w / sum(mix) for w in mix]
    counts = [int(s) for s in shares]
    for k in sorted(range(len(mix)), key=lambda k: counts[k] - shares[k])[: n - sum(counts)]:
        counts[k] += 1
    return counts


def render(scene: Scene, trajectory: Trajectory, rng: Any, size: int) -> Any:
    """The trajectory's frames [T, size, size, 3] uint8: the block at ``progress(i)`` of its path."""
    import numpy as np

    t = trajectory.num_frames
    centres = (np.arange(size) + 0.5) / size
    yy, xx = centres[:, None], centres[None, :]
    background = rng.uniform(70, 150) + rng.uniform(-12, 12, size=3)
    image = np.broadcast_to(background, (size, size, 3)).copy()
    # the goal zone: an outlined square, 2 px wide
    gx, gy = scene.goal
    outer = (abs(xx - gx) <= ZONE) & (abs(yy - gy) <= ZONE)
    inner = (abs(xx - gx) <= ZONE - 2 / size) & (abs(yy - gy) <= ZONE - 2 / size)
    image[outer & ~inner] = scene.zone
    if scene.shelf:
        image[(abs(yy - (gy + ZONE + 2.5 / size)) <= 1.5 / size) & (abs(xx - gx) <= 2 * ZONE)] = (110, 80, 50)
    start = np.asarray(scene.start) + rng.uniform(-0.04, 0.04, size=2)
    path = np.asarray(scene.goal) - start
    normal = np.array([-path[1], path[0]]) / np.linalg.norm(path)
    # a distractor beside the path (never on it), muted so it is not a block
    along, side = rng.uniform(0.1, 0.9), rng.choice([-1, 1]) * rng.uniform(0.22, 0.3)
    dx, dy = np.clip(start + along * path + side * normal, 0.08, 0.92)
    image[(xx - dx) ** 2 + (yy - dy) ** 2 <= 0.05**2] = DISTRACTORS[rng.integers(len(DISTRACTORS))]
    # the block: exactly progress(i) along the path, plus a sideways wobble that makes no progress
    progress = np.array([trajectory.progress(i) for i in range(t)])
    amplitude = rng.uniform(0.02, 0.05) if trajectory.quality_label == "failure" else rng.uniform(0.0, 0.015)
    phase = np.linspace(0, rng.uniform(1, 3) * np.pi, t) + rng.uniform(0, 2 * np.pi)
    position = start + progress[:, None] * path + (amplitude * np.sin(phase))[:, None] * normal
    bx, by = position[:, 0, None, None], position[:, 1, None, None]
    block = (abs(xx - bx) <= BLOCK) & (abs(yy - by) <= BLOCK)
    fill = (abs(xx - bx) <= BLOCK - 1 / size) & (abs(yy - by) <= BLOCK - 1 / size)
    frames = np.broadcast_to(image, (t, size, size, 3)).copy()
    frames[block] = (25, 25, 25)  # a dark 1 px border
    frames[fill] = scene.block
    frames += rng.normal(0, 3, size=frames.shape)
    return np.clip(frames, 0, 255).astype(np.uint8)


def write_store(out: Path, spec: SyntheticConfig, seed: int) -> None:
    """Fill the empty folder ``out`` with the synthetic store (and its LeRobot copy, when asked)."""
    import numpy as np

    _check(spec)
    out = Path(out)
    rng = np.random.default_rng(seed)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    rows, recordings = [], []
    for k, scene in enumerate(SCENES[: spec.tasks]):
        counts = quality_counts(spec.trajectories_per_task, list(spec.quality_mix))
        labels = [label for label, count in zip(QUALITY_LABELS, counts) for _ in range(count)]
        for n, quality in enumerate(rng.permutation(labels)):
            length = int(rng.integers(spec.min_frames, spec.max_frames + 1))
            partial = {"successful": 1.0, "failure": 0.0}.get(quality)
            if partial is None:
                partial = round(float(rng.uniform(*SUBOPTIMAL_RANGE)), 4)
            trajectory_id = f"task{k}_{n:03d}"
            trajectory = Trajectory(id=trajectory_id, task=scene.task, data_source=DATA_SOURCE,
                                    quality_label=str(quality), partial_success=partial, num_frames=length,
                                    frames_shape=(length, spec.size, spec.size, 3),
                                    npz_path=f"frames/{trajectory_id}.npz", fps=spec.fps)
            frames = render(scene, trajectory, rng, spec.size)
            np.savez(out / trajectory.npz_path, frames=frames)
            rows.append({"id": trajectory.id, "task": trajectory.task, "quality_label": trajectory.quality_label,
                         "partial_success": partial, "data_source": DATA_SOURCE, "npz_path": trajectory.npz_path,
                         "fps": spec.fps, "num_frames": length, "frames_shape": list(trajectory.frames_shape)})
            if spec.lerobot_copy:
                from qvl.lerobot import Recording

                recordings.append(Recording(task=scene.task, frames={CAMERA: list(frames)},
                                            columns={"progress": [trajectory.progress(i) for i in range(length)]}))
    (out / DEFAULT_TABLE).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    if spec.lerobot_copy:
        from qvl.lerobot import write_dataset

        write_dataset(out / "lerobot", recordings, spec.fps, version="v3.0")
    per_label = Counter(row["quality_label"] for row in rows)
    print(f"qvl-vqa: {len(rows)} synthetic trajectories ("
          + ", ".join(f"{per_label[label]} {label}" for label in QUALITY_LABELS)
          + f") of {spec.tasks} tasks, {sum(r['num_frames'] for r in rows)} frames of {spec.size}x{spec.size}"
          + (", with a LeRobot v3.0 copy in lerobot/" if spec.lerobot_copy else ""))  # out: a temporary folder
