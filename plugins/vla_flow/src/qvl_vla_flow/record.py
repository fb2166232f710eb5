"""``qvl run vla_flow record``: a scripted expert plays Miniworld, written in the capture format.

Each episode is what the Windows capture tool writes for a person playing the game with Miniworld's
manual-control keys (``miniworld/manual_control.py``):

* frame ``i`` is the env's observation (``canvas x canvas``) at frame-clock time ``i * 1000 / fps``
  plus a few ms of jitter; frame 0 is the observation after ``reset``, frame ``i + 1`` the one after
  step ``i``; the last frame is the observation after the final step and has no action;
* the action the expert picks after seeing frame ``i`` is pressed during frame ``i``'s interval: its
  key (:data:`~qvl_vla_flow.actions.MINIWORLD_KEYS`) goes down a few ms after the frame, stays down
  across consecutive frames with the same action (Windows auto-repeat sends further keydowns, the
  first after ``REPEAT_DELAY_MS``, then every ``REPEAT_MS``), and comes up a few ms before the
  frame where the action changes or the episode ends, so each frame's held keys are exactly the
  action taken after it;
* the player first clicks into the game window: a few mousemove events toward a point of the
  canvas and a left click, all in the first frame's interval, before its key goes down; the cursor
  rests after that;
* with probability ``duplicate_rate`` a frame is written twice with the same timestamp, as a
  stalled screen grabber does.

Timestamps are QPC counts from a realistic base (hours of uptime); the input hook's clock runs
``offset_ms`` behind the grabber's: an event at frame-clock time ``t`` is written with
``ts = round((t - offset_ms) * qpc_freq / 1000) + base``. The files themselves are written by
:func:`qvl_vla_flow.capture_format.write_episode`.

The expert reads the simulator's state (the agent's position and heading, the goal box) and turns
toward the box while the heading error exceeds a threshold, else moves forward; a seeded share of
extra turns and a per-episode threshold make episodes differ. It drives the "go to the box" envs
in :data:`SUPPORTED_ENVS`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from qvl.data import digest
from qvl.errors import UserError
from qvl_vla_flow.actions import MINIWORLD_KEYS, VK_CODES, ActionSpace
from qvl_vla_flow.config import RecordSettings

if TYPE_CHECKING:
    from qvl.config import RunConfig

# env id -> the attribute of the unwrapped env that holds the goal entity
SUPPORTED_ENVS: dict[str, str] = {
    "MiniWorld-OneRoom-v0": "box",
    "MiniWorld-OneRoomS6-v0": "box",
    "MiniWorld-OneRoomS6Fast-v0": "box",
    "MiniWorld-Hallway-v0": "box",
}
ACTION_KEYS: dict[str, str] = {action: key for key, action in MINIWORLD_KEYS.items()}  # "turn_left" -> "LEFT"
EXPERT_ACTIONS = ("turn_left", "turn_right", "move_forward")
EPISODE_PREFIX = "episode_"

# Windows keyboard auto-repeat at its default settings: first repeat after ~500 ms, then ~30/s
REPEAT_DELAY_MS = 500.0
REPEAT_MS = 33.0
# the expert's heading threshold as a multiple of the env's largest turn step (above 1/2 so one
# turn never overshoots into another)
THRESHOLD_RANGE = (0.55, 0.9)
EXPERT_VERSION = 2  # 2: searches by turning left while the box is out of view


# ---------------------------------------------------------------------------------------------
# The simulator


def import_miniworld() -> Any:
    """Import gymnasium + miniworld (registering the envs); headless when there is no display."""
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("PYGLET_HEADLESS", "true")
    # Mesa's software GL and triton (which torch imports lazily, e.g. for torchvision.ops) each
    # load an LLVM; triton's native module segfaults when it loads after Mesa has rendered, so it
    # goes first (a process that records, then encodes frames, needs both)
    if importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    try:
        import gymnasium
        import miniworld  # noqa: F401  (registers the MiniWorld-* envs)
    except ImportError as exc:
        raise UserError(f"recording needs the Miniworld simulator ({exc}): pip install qvl-vla-flow[sim] "
                        "(miniworld, gymnasium); without a display it renders headless "
                        "(PYGLET_HEADLESS=true, or run under xvfb-run -a)") from exc
    return gymnasium


def check_env(env_id: str) -> None:
    if env_id not in SUPPORTED_ENVS:
        raise UserError(f"task.record.env = {env_id!r}: the scripted expert only plays "
                        f"{', '.join(SUPPORTED_ENVS)} (go to the box)")


def make_env(env_id: str, canvas: int, max_steps: int | None = None) -> Any:
    """The env rendering ``canvas x canvas`` observations; ``max_steps`` replaces its own step limit."""
    check_env(env_id)
    gym = import_miniworld()
    with contextlib.redirect_stdout(io.StringIO()):  # "Falling back to num_samples=4"
        env = gym.make(env_id, obs_width=canvas, obs_height=canvas)
    if max_steps is not None:
        env.unwrapped.max_episode_steps = max_steps
    return env


def default_instruction(env: Any, env_id: str) -> str:
    goal = getattr(env.unwrapped, SUPPORTED_ENVS[env_id])
    return f"go to the {getattr(goal, 'color', 'red')} box"


# ---------------------------------------------------------------------------------------------
# The expert


def heading_error(agent_pos: Sequence[float], agent_dir: float, goal_pos: Sequence[float]) -> float:
    """Signed angle (radians, ``(-pi, pi]``) to turn left by to face the goal (Miniworld's
    ``dir_vec = (cos dir, 0, -sin dir)``; turning left increases ``dir``)."""
    dx = float(goal_pos[0]) - float(agent_pos[0])
    dz = float(goal_pos[2]) - float(agent_pos[2])
    error = math.atan2(-dz, dx) - agent_dir
    return math.atan2(math.sin(error), math.cos(error))


@attrs.define
class GoToExpert:
    """Goes to the goal acting only on what its camera could show.

    While the goal is outside the field of view (``half_fov`` radians either side of the heading)
    it searches by turning left, as a player who cannot see the box would; once the goal is in
    view it turns toward it while the heading error exceeds ``threshold``, else moves forward.
    With probability ``wander`` a step is an extra turn either way (it turns back afterwards).

    An expert that turned the short way toward a box behind it would act on what no frame shows:
    a policy imitating it from pixels could only guess the direction, and its sampled chunks
    would pay for every wrong guess.
    """

    rng: np.random.Generator
    threshold: float
    half_fov: float = math.radians(30.0)
    wander: float = 0.0

    @classmethod
    def for_env(cls, env: Any, seed: int, wander: float = 0.0) -> GoToExpert:
        rng = np.random.default_rng([seed, 0])
        world = env.unwrapped
        turn = float(world.params.get_max("turn_step"))
        return cls(rng, math.radians(turn * rng.uniform(*THRESHOLD_RANGE)), horizontal_half_fov(world), wander)

    def act(self, agent_pos: Sequence[float], agent_dir: float, goal_pos: Sequence[float]) -> str:
        error = heading_error(agent_pos, agent_dir, goal_pos)
        if self.rng.random() < self.wander:
            return "turn_left" if self.rng.random() < 0.5 else "turn_right"
        if abs(error) > self.half_fov or error > self.threshold:
            return "turn_left"
        if error < -self.threshold:
            return "turn_right"
        return "move_forward"


def horizontal_half_fov(world: Any) -> float:
    """Half the camera's horizontal field of view (radians) for the env's observation shape."""
    vertical = math.radians(float(world.agent.cam_fov_y))
    height, width = world.observation_space.shape[:2]
    return math.atan(math.tan(vertical / 2) * width / height)


@attrs.frozen
class Rollout:
    actions: list[str]  # the expert's action after each frame but the last
    observations: list[np.ndarray]  # len(actions) + 1 (empty when not kept)
    success: bool
    instruction: str


def run_expert(env: Any, env_id: str, seed: int, max_steps: int, *, keep_frames: bool = True,
               wander: float = 0.0) -> Rollout:
    """One episode of the expert from ``reset(seed=seed)``: until the env ends it or ``max_steps``."""
    obs, _ = env.reset(seed=seed)
    world = env.unwrapped
    goal = getattr(world, SUPPORTED_ENVS[env_id])
    expert = GoToExpert.for_env(env, seed, wander)
    actions: list[str] = []
    observations = [obs] if keep_frames else []
    reward = 0.0
    for _ in range(max_steps):
        action = expert.act(world.agent.pos, world.agent.dir, goal.pos)
        obs, reward, terminated, truncated, _ = env.step(getattr(world.actions, action))
        actions.append(action)
        if keep_frames:
            observations.append(obs)
        if terminated or truncated:
            break
    return Rollout(actions, observations, bool(reward > 0), default_instruction(env, env_id))


def expert_success_rate(env_id: str, seeds: Sequence[int], max_steps: int, canvas: int = 32) -> dict[str, float]:
    """The expert's success rate (and mean steps) over ``seeds``, without writing anything."""
    env = make_env(env_id, canvas, max_steps)
    try:
        rollouts = [run_expert(env, env_id, seed, max_steps, keep_frames=False) for seed in seeds]
    finally:
        env.close()
    return {"episodes": len(rollouts), "success_rate": float(np.mean([r.success for r in rollouts])),
            "mean_steps": float(np.mean([len(r.actions) for r in rollouts]))}


# ---------------------------------------------------------------------------------------------
# Input timeline: frame times and the events a person pressing those keys produces


def timeline(actions: Sequence[str], fps: float, canvas: int,
             rng: np.random.Generator) -> tuple[list[float], list[dict]]:
    """Frame-clock times (ms) of the ``len(actions) + 1`` frames and the input events (each with
    its frame-clock time under ``"ms"``, in time order) that press ``actions`` frame by frame."""
    period = 1000.0 / fps
    jitter = min(3.0, 0.05 * period)
    frame_ms = [i * period + rng.uniform(-jitter, jitter) for i in range(len(actions) + 1)]
    frame_ms[0] = rng.uniform(0.0, jitter)
    events: list[dict] = []

    # the player clicks into the game window during the first frame, then presses the first key
    start = rng.uniform(0.1 * canvas, 0.9 * canvas, size=2)
    target = rng.uniform(0.3 * canvas, 0.7 * canvas, size=2)
    moves = int(rng.integers(3, 7))
    for k, when in enumerate(np.linspace(0.05, 0.3, moves)):
        share = 1.0 - (1.0 - (k + 1) / moves) ** 2  # eases into the target
        x, y = start + share * (target - start)
        if k < moves - 1:
            x, y = x + rng.normal(0, 0.01 * canvas), y + rng.normal(0, 0.01 * canvas)
        events.append({"ms": frame_ms[0] + when * period, "kind": "mousemove", **_pixel(x, y, canvas)})
    click = _pixel(*target, canvas)
    events.append({"ms": frame_ms[0] + rng.uniform(0.33, 0.4) * period, "kind": "mouseclick", **click, "buttons": 1})

    # one press per run of equal actions: down a few ms into its first frame, up a few ms before
    # the frame after its last one
    first = 0
    for i in range(1, len(actions) + 1):
        if i < len(actions) and actions[i] == actions[first]:
            continue
        vk = _vk(actions[first])
        down = frame_ms[first] + (rng.uniform(0.45, 0.6) if first == 0 else rng.uniform(0.02, 0.08)) * period
        up = frame_ms[i] - rng.uniform(0.01, 0.05) * period
        events.append({"ms": down, "kind": "keydown", "vk": vk})
        repeat = down + REPEAT_DELAY_MS + rng.uniform(-5.0, 5.0)
        while repeat < up:
            events.append({"ms": repeat, "kind": "keydown", "vk": vk})
            repeat += REPEAT_MS + rng.uniform(-1.5, 1.5)
        events.append({"ms": up, "kind": "keyup", "vk": vk})
        first = i
    events.sort(key=lambda event: event["ms"])  # stable: a keyup stays before a keydown at the same time
    return frame_ms, events


def _pixel(x: float, y: float, canvas: int) -> dict[str, int]:
    return {"x": int(np.clip(round(x), 0, canvas - 1)), "y": int(np.clip(round(y), 0, canvas - 1))}


def _vk(action: str) -> int:
    return VK_CODES[ACTION_KEYS[action]]


def to_qpc(ms: float, qpc_freq: int, base: int) -> int:
    return int(round(ms * qpc_freq / 1000.0)) + base


# ---------------------------------------------------------------------------------------------
# Recording


def episode_name(index: int) -> str:
    return f"{EPISODE_PREFIX}{index:06d}"


def record_episode(folder: Path, env: Any, settings: RecordSettings, index: int) -> dict[str, Any]:
    """Play episode ``index`` (``reset(seed=settings.seed + index)``) and write it into ``folder``."""
    from qvl_vla_flow.capture_format import write_episode

    seed = settings.seed + index
    rollout = run_expert(env, settings.env, seed, settings.max_steps, wander=settings.wander)
    frame_ms, events = timeline(rollout.actions, settings.fps, settings.canvas, np.random.default_rng([seed, 1]))
    clock = np.random.default_rng([seed, 2])
    base = int(clock.uniform(2 * 3600, 72 * 3600) * settings.qpc_freq)  # hours since boot
    frames: list[np.ndarray] = []
    frame_ts: list[int] = []
    duplicates = 0
    for obs, ms in zip(rollout.observations, frame_ms):
        ts = to_qpc(ms, settings.qpc_freq, base)
        copies = 2 if clock.random() < settings.duplicate_rate else 1
        duplicates += copies - 1
        frames.extend([obs] * copies)
        frame_ts.extend([ts] * copies)
    written = [{"ts": to_qpc(e["ms"] - settings.offset_ms, settings.qpc_freq, base),
                **{k: v for k, v in e.items() if k != "ms"}} for e in events]
    meta = {"fps": settings.fps, "canvas_w": settings.canvas, "canvas_h": settings.canvas,
            "qpc_freq": settings.qpc_freq, "offset_ms": settings.offset_ms,
            "instruction": settings.instruction or rollout.instruction, "env": settings.env, "seed": seed,
            "success": rollout.success, "steps": len(rollout.actions), "duplicates": duplicates,
            "expert_actions": rollout.actions,
            "expert_keys": [ACTION_KEYS[a] for a in rollout.actions]}
    write_episode(folder, frames, frame_ts, written, meta)
    return {"frames": len(frames), "steps": len(rollout.actions), "success": rollout.success,
            "duplicates": duplicates}


def record(out: Path, settings: RecordSettings, space: ActionSpace | None = None, *,
           progress: bool = True) -> dict[str, Any]:
    """Write ``settings.episodes`` episodes (``episode_000000``, ...) into ``out``, once.

    ``out`` is built through :func:`qvl.build.build_directory`: the same settings reuse it, other
    settings rebuild it, a user's non-empty folder is refused. ``space``: the action vector the
    recordings are read with; it must hold the keys the expert presses.
    :returns: episodes, frames (duplicates included), duplicates, steps, success_rate, seconds,
        folder, reused.
    """
    from qvl.build import build_directory

    check_env(settings.env)
    _check_space(space or ActionSpace())
    if settings.canvas % 2:
        raise UserError(f"task.record.canvas = {settings.canvas}: expected an even size (the video is "
                        "H.264 yuv420p, whose sides are even)")
    out = Path(out).expanduser()
    start = time.perf_counter()
    stats: list[dict[str, Any]] = []

    def build(tmp: Path) -> None:
        from tqdm.auto import tqdm

        env = make_env(settings.env, settings.canvas, settings.max_steps)
        try:
            bar = tqdm(range(settings.episodes), desc="vla_flow record", unit="episode",
                       disable=not progress, dynamic_ncols=True)
            for index in bar:
                stats.append(record_episode(tmp / episode_name(index), env, settings, index))
                bar.set_postfix(success=f"{np.mean([s['success'] for s in stats]):.2f}")
            bar.close()
        finally:
            env.close()

    build_directory(out, build, kind="recordings", fingerprint=attrs.asdict(settings),
                    hint="choose another task.recordings_dir", info={"plugin": "vla_flow"},
                    announce=f"vla_flow: recording {settings.episodes} episodes of {settings.env} into {out}")
    reused = not stats
    if reused:
        stats = _existing_stats(out)
    return {"episodes": len(stats), "frames": sum(s["frames"] for s in stats),
            "duplicates": sum(s["duplicates"] for s in stats), "steps": sum(s["steps"] for s in stats),
            "success_rate": float(np.mean([s["success"] for s in stats])) if stats else 0.0,
            "seconds": round(time.perf_counter() - start, 3), "folder": str(out), "reused": reused}


def _check_space(space: ActionSpace) -> None:
    missing = [ACTION_KEYS[a] for a in EXPERT_ACTIONS if ACTION_KEYS[a] not in space.keys]
    if missing:
        raise UserError(f"task.keys = {list(space.keys)} lacks {missing}: the recorder presses Miniworld's "
                        f"manual-control keys {[ACTION_KEYS[a] for a in EXPERT_ACTIONS]}")


def _existing_stats(out: Path) -> list[dict[str, Any]]:
    stats = []
    for folder in sorted(out.glob(f"{EPISODE_PREFIX}*")):
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        stats.append({"frames": (folder / "frame_ts.bin").stat().st_size // 8, "steps": meta.get("steps", 0),
                      "success": bool(meta.get("success")), "duplicates": meta.get("duplicates", 0)})
    return stats


def settings_digest(settings: RecordSettings) -> str:
    """What names a recording: its settings and the expert's version (new behaviour, new folder)."""
    return digest({**attrs.asdict(settings), "expert": EXPERT_VERSION})


def recordings_folder(config: RunConfig) -> Path:
    """``task.recordings_dir`` when set, else the cache folder of ``task.record``'s settings."""
    task = config.task
    if task.recordings_dir:
        return Path(task.recordings_dir).expanduser()
    from qvl.cache import cache_dir

    return cache_dir() / "vla_flow" / "recordings" / settings_digest(task.record)


def record_stage(config: RunConfig) -> None:
    """``qvl run vla_flow record``: record ``task.record`` into :func:`recordings_folder`."""
    folder = recordings_folder(config)
    summary = record(folder, config.task.record, config.task.action_space)
    what = "reused" if summary["reused"] else f"recorded in {summary['seconds']:.1f} s"
    print(f"vla_flow record: {summary['episodes']} episodes, {summary['frames']} frames "
          f"({summary['duplicates']} duplicates), {summary['steps']} steps, expert success rate "
          f"{summary['success_rate']:.2f}; {what}: {folder}")
