"""The embedded data set (``qvl run segment make-data``): pick-and-place episodes in ``episodes.jsonl``.

A 2D tabletop seen from the side: a gripper (arm, palm, two fingers) and one coloured block,
plus a grey ball that rolls around the whole episode and a little pixel noise. An episode performs
a contiguous run of 1..``max_skills`` skills of the chain :data:`SKILLS` (reach, grasp, lift,
move, place, release, retreat), so every sequence is plausible; the scene starts in the state the
skills before the run would have left it in (a run starting at ``lift`` starts with the block
already in the closed gripper).

Each skill is visible in its own way: the open gripper travels to the block (reach), the fingers
close (grasp) or open (release), gripper and block go up (lift), sideways (move) or down (place),
the empty gripper goes up and away (retreat). Boundaries are not marked by how much the picture
changes: skills move at constant speed and follow one another with no pause (a gap of 0-3 frames
of drift); before the first skill, between skills and after the last one the gripper drifts
slowly while hovering about as fast as a skill moves; the fingers-only skills bob the gripper the
same way; the ball moves all the time at a speed that changes at random moments; the lighting
flickers a little. What changes at a boundary is the kind of motion. (On 150 episodes a
frame-difference detector told the number of boundaries finds them with F1 0.44 within one frame,
0.51 once the flicker is normalised away, against 0.38 for random frames.) ``empty_fraction`` of
the episodes perform no skill.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from qvl.config import fraction, positive
from qvl.data import digest, settings_fingerprint

if TYPE_CHECKING:
    from qvl.build import SyntheticData

VERSION = 1  # bump when what is written changes: it keys the cached data set
SKILLS = ("reach", "grasp", "lift", "move", "place", "release", "retreat")
COLOURS = {"red": (215, 40, 40), "green": (40, 180, 60), "blue": (45, 75, 220), "yellow": (230, 210, 40)}
SKILL_FRAMES = (4, 20)  # the shortest and longest skill
GAP_FRAMES = (0, 0, 1, 2, 3)  # drift frames between two skills, drawn uniformly: usually none

# geometry, in fractions of the image height (sizes, y) and width (x); y grows downwards
TABLE_Y = 0.78  # the table top
BLOCK_HALF = 0.075
FINGER_LENGTH, FINGER_WIDTH, PALM_HEIGHT, ARM_WIDTH = 0.19, 0.035, 0.04, 0.045
CLOSED_OFFSET = BLOCK_HALF + FINGER_WIDTH / 2  # finger centre to gripper centre, touching the block
OPEN_OFFSET = CLOSED_OFFSET + 0.09
HOLD_DROP = FINGER_LENGTH - BLOCK_HALF  # palm to the centre of a held block (fingertips at its bottom)
REST_Y = TABLE_Y - BLOCK_HALF  # the centre of a block on the table
BALL_RADIUS = 0.09
BALL_SPEED = (0.02, 0.12)  # image widths per frame; redrawn with the heading every BALL_RUN frames
BALL_RUN = (2, 6)
FLICKER = 0.015  # the standard deviation of a per-frame brightness gain (lighting)
SKILL_SPEED = (0.02, 0.045)  # image heights or widths per frame
WOBBLE_AMPLITUDE = (0.01, 0.03)  # the gripper's hovering between skills, per axis
WOBBLE_PERIOD = (4.0, 8.0)  # frames
GRIPPER, ARM, BALL, OUTLINE = (70, 70, 78), (95, 95, 105), (150, 150, 150), (30, 30, 30)
WALL, TABLE = (185, 190, 200), (140, 110, 80)
SUPERSAMPLE = 2  # draw at twice the size and average down: positions move smoothly, not in whole pixels


def _image_size(instance: Any, attribute: attrs.Attribute, value: list[int]) -> None:
    if len(value) != 2 or any(not isinstance(v, int) or v < 32 or v % 2 for v in value):
        raise ValueError(f"'{attribute.name}' must be [width, height], even numbers >= 32 (H.264 needs even "
                         f"sizes); got {value}")


def _min_frames(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < SKILL_FRAMES[0] + 2:
        raise ValueError(f"'{attribute.name}' must be >= {SKILL_FRAMES[0] + 2} (one skill of "
                         f"{SKILL_FRAMES[0]} frames and a frame of drift on each side); got {value}")


def _max_frames(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < instance.min_frames:
        raise ValueError(f"'{attribute.name}' must be >= min_frames ({instance.min_frames}); got {value}")


@attrs.define
class SyntheticSettings:
    """``[task.synthetic]``: the embedded pick-and-place episodes (``qvl run segment make-data``)."""

    episodes: int = attrs.field(default=400, validator=positive)
    min_frames: int = attrs.field(default=16, validator=_min_frames)
    max_frames: int = attrs.field(default=64, validator=_max_frames)
    image_size: list[int] = attrs.field(factory=lambda: [64, 64], validator=_image_size)  # width, height
    max_skills: int = attrs.field(default=4, validator=attrs.validators.in_(range(1, len(SKILLS) + 1)))
    empty_fraction: float = attrs.field(default=0.1, validator=fraction)  # episodes with no segment
    video: bool = False  # one mp4 per episode instead of a folder of PNGs
    fps: float = attrs.field(default=10.0, validator=positive)


def fingerprint(settings: SyntheticSettings, seed: int) -> dict[str, Any]:
    """Everything the written data set depends on."""
    return settings_fingerprint(settings, format="segment-synthetic", version=VERSION, seed=seed)


def dataset_key(settings: SyntheticSettings, seed: int) -> str:
    """The cache folder name: readable settings plus a digest of all of them."""
    width, height = settings.image_size
    return (f"segment-synthetic-v{VERSION}-{settings.episodes}ep-{settings.min_frames}-{settings.max_frames}f-"
            f"{width}x{height}{'-video' if settings.video else ''}-s{seed}-"
            f"{digest(fingerprint(settings, seed), 10, algorithm='sha1')}")


def synthetic_data(settings: SyntheticSettings, seed: int) -> SyntheticData:
    """The :class:`qvl.build.SyntheticData` that writes this data set once into qvl's cache."""
    from qvl.build import SyntheticData

    return SyntheticData(key=dataset_key(settings, seed), fingerprint=fingerprint(settings, seed),
                         write=lambda out: write_dataset(out, settings, seed), plugin="qvl-segment",
                         description="the synthetic pick-and-place episodes")


# -- the episode's story: which skills, when, and where everything is at every frame ------------


@attrs.define
class _State:
    """Where things are at one frame (x in image widths, y in image heights)."""

    gripper: Any  # numpy (x, y) of the palm's centre
    opening: float  # 1 open, 0 closed on the block
    block: Any  # numpy (x, y) of the block's centre
    held: bool

    def copy(self) -> _State:
        return _State(self.gripper.copy(), self.opening, self.block.copy(), self.held)


def _apply(state: _State, skill: str, frames: int, rng: Any) -> tuple[_State, str]:
    """The state a skill of ``frames`` frames ends in (its target), and the words that end its action
    text. Distances follow the duration (a speed of SKILL_SPEED), so a short skill is not a jump."""
    import numpy as np

    target, words = state.copy(), ""
    at_block = np.array([state.block[0], state.block[1] - HOLD_DROP])
    distance = rng.uniform(*SKILL_SPEED) * frames
    if skill == "reach":
        target.gripper, target.opening = at_block, 1.0
    elif skill == "grasp":
        target.gripper, target.opening, target.held = at_block, 0.0, True
    elif skill == "lift":
        target.gripper[1] -= np.clip(distance, 0.15, 0.3)
    elif skill == "move":
        x = state.gripper[0]
        direction = 1 if x < 0.35 else -1 if x > 0.65 else int(rng.choice([-1, 1]))
        target.gripper[0] = np.clip(x + direction * np.clip(distance, 0.12, 0.35), 0.15, 0.85)
        words = " right" if direction > 0 else " left"
    elif skill == "place":
        target.gripper[1] = REST_Y - HOLD_DROP
        words = " on the table"
    elif skill == "release":
        target.opening, target.held = 1.0, False
    elif skill == "retreat":
        target.gripper = _away(state.gripper, np.clip(distance, 0.12, 0.4), rng)
    if target.held:
        target.block = target.gripper + (0.0, HOLD_DROP)
    return target, words


def _away(point: Any, distance: float, rng: Any) -> Any:
    """A point ``distance`` up and to a side of ``point`` (inside the scene, above the table)."""
    import numpy as np

    angle = rng.uniform(np.radians(200), np.radians(340))  # upwards: y grows downwards
    return np.clip(point + distance * np.array([np.cos(angle), np.sin(angle)]), (0.12, 0.1), (0.88, 0.45))


def _skill_frames(start: _State, end: _State, frames: int, rng: Any) -> list[_State]:
    """Constant speed from ``start`` to ``end``: the first frame has already moved, the last is ``end``
    (no slowing down at the ends, which would mark the boundary). A skill that only works the
    fingers (grasp, release) bobs the gripper up and down meanwhile, as much as it hovers between
    skills, so it is no stiller than the frames around it."""
    import numpy as np

    fingers_only = bool(np.allclose(start.gripper, end.gripper, atol=0.02))
    amplitude = rng.uniform(*WOBBLE_AMPLITUDE) if fingers_only else 0.0
    angular = 2 * np.pi / rng.uniform(*WOBBLE_PERIOD)
    states = []
    for j in range(1, frames + 1):
        t = j / frames
        gripper = start.gripper + t * (end.gripper - start.gripper)
        gripper[1] += amplitude * np.sin(angular * j) * np.sin(np.pi * t)  # zero at both ends
        opening = start.opening + t * (end.opening - start.opening)
        # the block moves with the gripper only once grasped (grasp holds it from its last frame on)
        held = start.held and end.held
        block = gripper + (0.0, HOLD_DROP) if held else start.block.copy()
        states.append(_State(gripper, opening, block, held if j < frames else end.held))
    return states


def _drift_frames(start: _State, frames: int, rng: Any) -> list[_State]:
    """The gripper (and the block it holds) between skills: a slow wandering plus a hovering wobble.

    The wobble moves the gripper about as many pixels per frame as a skill does, but goes nowhere:
    a skill starting or ending does not change how much the picture changes, only how it moves.
    It starts at zero, so the motion is continuous where a skill ends.
    """
    import numpy as np

    states, state = [], start.copy()
    velocity = rng.normal(0, 0.003, size=2)
    amplitude = rng.uniform(*WOBBLE_AMPLITUDE, size=2)
    angular = 2 * np.pi / rng.uniform(*WOBBLE_PERIOD, size=2) * rng.choice([-1, 1], size=2)
    lowest = REST_Y - HOLD_DROP  # a held block rests on the table; an empty gripper's tips touch it
    anchor = state.gripper.copy()
    for t in range(1, frames + 1):
        velocity = 0.85 * velocity + rng.normal(0, 0.0015, size=2)
        anchor = np.clip(anchor + velocity, (0.1, 0.1), (0.9, lowest))
        state = state.copy()
        state.gripper = np.clip(anchor + amplitude * np.sin(angular * t), (0.1, 0.1), (0.9, lowest))
        if state.held:
            state.block = state.gripper + (0.0, HOLD_DROP)
        states.append(state)
    return states


def _timeline(length: int, skills: int, rng: Any) -> tuple[int, list[int], list[int]]:
    """Frames of drift before the first skill, each skill's duration and the gaps between skills,
    adding up to ``length`` (at least one drift frame at each end)."""
    import numpy as np

    shortest, longest = SKILL_FRAMES
    gaps = rng.choice(GAP_FRAMES, size=skills - 1)
    slack = length - shortest * skills - 2 - int(gaps.sum())
    if slack < 0:
        gaps[:] = 0
        slack = length - shortest * skills - 2
    shares = rng.dirichlet(np.ones(skills + 2)) * slack
    durations = shortest + np.minimum(np.floor(shares[:skills]), longest - shortest).astype(int)
    idle = length - int(durations.sum()) - int(gaps.sum())  # >= 2, split in the ratio of the last two shares
    before = 1 + int((idle - 2) * shares[skills] / max(shares[skills] + shares[skills + 1], 1e-9))
    return before, durations.tolist(), gaps.tolist()


def _story(settings: SyntheticSettings, index: int, empty: bool, rng: Any) -> tuple[dict[str, Any], list[_State]]:
    """Episode ``index``'s line of ``episodes.jsonl`` (without its frames) and its per-frame states."""
    import numpy as np

    colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
    length = int(rng.integers(settings.min_frames, settings.max_frames + 1))
    most = min(settings.max_skills, (length - 2) // SKILL_FRAMES[0])
    count = 0 if empty else int(rng.integers(1, most + 1))
    first = int(rng.integers(0, len(SKILLS) - count + 1))  # where the run starts in the chain
    before, durations, gaps = _timeline(length, count, rng) if count else (length, [], [])
    block = np.array([rng.uniform(0.2, 0.8), REST_Y])
    # a reach starts as far from the block as its duration allows at the usual speed
    reach = np.clip(rng.uniform(*SKILL_SPEED) * (durations[0] if first == 0 and count else 10), 0.15, 0.5)
    state = _State(gripper=_away(block - (0.0, HOLD_DROP), reach, rng), opening=1.0, block=block, held=False)
    for skill in SKILLS[:first]:  # the state the skills before the run leave
        state, _ = _apply(state, skill, 10, rng)
    scene = _scene_text(state, colour)
    states = _drift_frames(state, before, rng)
    segments = []
    if count:
        for k, skill in enumerate(SKILLS[first:first + count]):
            target, words = _apply(states[-1], skill, durations[k], rng)
            start = len(states)
            states += _skill_frames(states[-1], target, durations[k], rng)
            segments.append({"start_frame": start, "end_frame": len(states) - 1,
                             "action_text": f"{_verb(skill)} the {colour} block{words}", "skill": skill})
            states += _drift_frames(states[-1], gaps[k] if k < count - 1 else length - len(states), rng)
    row = {"episode_id": f"ep{index:05d}", "task_name": f"pick_and_place_{colour}", "init_scene_text": scene,
           "action_config": segments}
    return row, states


def _verb(skill: str) -> str:
    return "retreat from" if skill == "retreat" else skill


def _scene_text(state: _State, colour: str) -> str:
    """The start of an episode in words: where the block is, the gripper's state and place."""
    import numpy as np

    on_table = abs(state.block[1] - REST_Y) < 0.02
    if state.held:
        block = "held by the gripper " + ("on the table" if on_table else "above the table")
    else:
        block = "on the table"
    at_block = np.abs(state.gripper - (state.block[0], state.block[1] - HOLD_DROP)).max() < 0.03
    x = state.gripper[0]
    side = "left side" if x < 0.4 else "right side" if x > 0.6 else "middle"
    where = "around it" if at_block else f"above the {side}"
    gripper = "closed" if state.opening < 0.5 else "open"
    return f"a {colour} block {block}, the gripper {gripper} {where}, a grey ball rolling about"


# -- drawing -----------------------------------------------------------------------------------


def _ball_path(frames: int, rng: Any) -> Any:
    """The ball's centre at every frame: straight runs at a speed and heading redrawn every few
    frames (BALL_RUN), bouncing off the edges."""
    import numpy as np

    position = np.array([rng.uniform(0.1, 0.9), rng.uniform(0.15, 0.9)])
    path, velocity, left = [], np.zeros(2), 0
    for _ in range(frames):
        if left == 0:
            angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(*BALL_SPEED)
            velocity, left = speed * np.array([np.cos(angle), np.sin(angle)]), int(rng.integers(*BALL_RUN))
        position = position + velocity
        for axis, (low, high) in enumerate(((0.08, 0.92), (0.1, 0.92))):
            if not low <= position[axis] <= high:
                velocity[axis] = -velocity[axis]
                position[axis] = np.clip(position[axis], low, high)
        left -= 1
        path.append(position)
    return path


def render(states: list[_State], colour: str, size: tuple[int, int], rng: Any) -> Any:
    """The frames [T, height, width, 3] uint8 of the states, with the ball and the noise."""
    import numpy as np
    from PIL import Image, ImageDraw

    width, height = size
    w, h = width * SUPERSAMPLE, height * SUPERSAMPLE
    wall = tuple(int(c) for c in np.clip(np.array(WALL) + rng.integers(-15, 16, size=3), 0, 255))
    table = tuple(int(c) for c in np.clip(np.array(TABLE) + rng.integers(-12, 13, size=3), 0, 255))
    background = Image.new("RGB", (w, h), wall)
    ImageDraw.Draw(background).rectangle([0, TABLE_Y * h, w, h], fill=table)

    def box(x: float, y: float, half_x: float, half_y: float) -> list[float]:
        """A rectangle centred at (x image widths, y image heights), half sizes in image heights."""
        return [x * w - half_x * h, y * h - half_y * h, x * w + half_x * h, y * h + half_y * h]

    frames = np.empty((len(states), height, width, 3), np.uint8)
    for t, (state, ball) in enumerate(zip(states, _ball_path(len(states), rng))):
        image = background.copy()
        draw = ImageDraw.Draw(image)
        draw.ellipse(box(*ball, BALL_RADIUS, BALL_RADIUS), fill=BALL)
        draw.rectangle(box(*state.block, BLOCK_HALF, BLOCK_HALF), fill=COLOURS[colour], outline=OUTLINE,
                       width=SUPERSAMPLE)
        gx, gy = state.gripper
        draw.rectangle([gx * w - ARM_WIDTH / 2 * h, 0, gx * w + ARM_WIDTH / 2 * h, gy * h], fill=ARM)
        offset = CLOSED_OFFSET + state.opening * (OPEN_OFFSET - CLOSED_OFFSET)
        draw.rectangle(box(gx, gy, offset + FINGER_WIDTH / 2, PALM_HEIGHT / 2), fill=GRIPPER)
        for side in (-1, 1):
            finger_x = gx + side * offset * h / w  # the offset is in heights, x in widths
            draw.rectangle(box(finger_x, gy + FINGER_LENGTH / 2, FINGER_WIDTH / 2, FINGER_LENGTH / 2), fill=GRIPPER)
        small = np.asarray(image.reduce(SUPERSAMPLE), dtype=np.float32) * (1 + rng.normal(0, FLICKER))
        frames[t] = np.clip(small + rng.normal(0, 3, size=small.shape), 0, 255).astype(np.uint8)
    return frames


# -- writing -----------------------------------------------------------------------------------


def empty_episodes(settings: SyntheticSettings, seed: int) -> set[int]:
    """The indices of the episodes with no skill: exactly ``round(episodes * empty_fraction)`` of them."""
    import numpy as np

    order = np.random.default_rng([seed, settings.episodes, 1]).permutation(settings.episodes)
    return {int(i) for i in order[: round(settings.episodes * settings.empty_fraction)]}


def write_episode(root: Path, settings: SyntheticSettings, seed: int, index: int, empty: bool) -> dict[str, Any]:
    """Render episode ``index`` (its own generator: the same whatever the order or the process),
    write its frames under ``root`` and return its ``episodes.jsonl`` line."""
    import numpy as np

    rng = np.random.default_rng([seed, index])
    row, states = _story(settings, index, empty, rng)
    frames = render(states, row["task_name"].rsplit("_", 1)[1], tuple(settings.image_size), rng)
    episode_id = row["episode_id"]
    if settings.video:
        from qvl.lerobot.video import encode_video

        encode_video(root / "videos" / f"{episode_id}.mp4", list(frames), settings.fps)
        media = {"video": f"videos/{episode_id}.mp4", "fps": settings.fps}
    else:
        from PIL import Image

        folder = root / "frames" / episode_id
        folder.mkdir(parents=True, exist_ok=True)
        names = [f"frames/{episode_id}/{t:06d}.png" for t in range(len(frames))]
        for name, frame in zip(names, frames):
            Image.fromarray(frame).save(root / name, compress_level=1)  # noisy pixels hardly compress anyway
        media = {"frames_paths": names}
    return {"episode_id": episode_id, **media, **{k: v for k, v in row.items() if k != "episode_id"}}


def write_dataset(root: Path, settings: SyntheticSettings, seed: int, workers: int | None = None) -> None:
    """Fill the empty folder ``root`` with ``episodes.jsonl`` and the frames (or videos).

    Episodes are rendered by ``workers`` threads (default: the cores, at most 8): PNG and H.264
    encoding release the GIL, and threads need no pickling or ``__main__`` re-import, unlike a
    process pool (measured faster, too). Each episode has its own generator, so the output does
    not depend on the number of threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    empty = empty_episodes(settings, seed)
    workers = max(1, min(workers or os.cpu_count() or 1, 8, settings.episodes))
    with ThreadPoolExecutor(workers) as pool:
        rows = list(pool.map(lambda i: write_episode(root, settings, seed, i, i in empty), range(settings.episodes)))
    (root / "episodes.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    segments = sum(len(row["action_config"]) for row in rows)
    print(f"qvl-segment: {len(rows)} synthetic episodes ({len(empty)} without a skill, {segments} segments), "
          f"{'one mp4 each' if settings.video else 'PNG frames'}")
