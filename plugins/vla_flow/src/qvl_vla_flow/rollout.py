"""Closed-loop evaluation: the trained policy plays Miniworld episodes it has never seen.

``qvl run vla_flow rollout`` plays ``task.rollout.episodes`` episodes of ``task.rollout.env`` on
env seeds ``task.rollout.seed ...`` (never the recorded ones) with each of
``task.rollout.policies``, the same seeds for each, so the table reads model against random
against expert:

* ``model``: the trained policy through a :class:`~qvl_vla_flow.session.PolicySession` (each
  frame encoded once, the training window) and an :class:`~qvl_vla_flow.executor.ActionQueue`
  that executes the first ``execute_steps`` actions of each chunk;
* ``random``: a uniformly random env action every step (the env's own action space);
* ``expert``: the scripted expert that recorded the training data.

An episode succeeds when its last reward is above 0 (Miniworld's ``terminated`` also ends some
failures); ``max_steps`` steps without success is a timeout. A step where the policy presses no
key is an idle step: time passes, the env does not move. Success rates come with a 95 % Wilson
interval (exact enough at 50 episodes, unlike the normal approximation near 0 or 1).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import numpy as np

import qvl
from qvl_vla_flow.executor import ActionQueue, MiniworldExecutor
from qvl_vla_flow.record import SUPPORTED_ENVS, GoToExpert, default_instruction, make_env
from qvl_vla_flow.samples import rest_action

if TYPE_CHECKING:
    from qvl.config import RunConfig

    from qvl_vla_flow.actions import ActionSpace
    from qvl_vla_flow.session import PolicySession

POLICIES = ("model", "random", "expert")
VALIDATION_SEED_OFFSET = 500_000  # validation rollouts play other seeds than the rollout stage


class Controller(Protocol):
    """Chooses an env action per step; ``None`` is an idle step."""

    def start(self, env: Any, seed: int, instruction: str) -> None: ...

    def act(self, observation: np.ndarray) -> int | None: ...


def executed_state(space: ActionSpace, action: np.ndarray) -> np.ndarray:
    """The vector the next state token shows: binary channels as executed (+-1), mouse as predicted.

    Training states are recorded actions, whose binary channels are exactly -1 or +1.
    """
    state = np.asarray(action, dtype=np.float32).copy()
    binary = space.binary
    state[binary] = np.where(state[binary] > 0, 1.0, -1.0)
    return state


class ModelController:
    """The trained policy: a chunk from the session, its first ``execute_steps`` executed."""

    def __init__(self, session: PolicySession, space: ActionSpace, execute_steps: int, mouse_turn: float = 0.0):
        self.session = session
        self.space = space
        self.queue = ActionQueue(execute_steps)
        self.mouse_turn = mouse_turn
        self.queries = 0
        self.idle_steps = 0

    def start(self, env: Any, seed: int, instruction: str) -> None:
        self.session.reset(instruction)
        self.queue.clear()
        self.previous = rest_action(self.space)
        self.execute = MiniworldExecutor.for_env(self.space, env, self.mouse_turn)

    def act(self, observation: np.ndarray) -> int | None:
        self.session.observe(observation)
        if not len(self.queue):
            # only the steps it will execute: the same actions as the whole chunk's first ones
            self.queue.refill(self.session.act(self.previous, length=self.queue.execute_steps))
            self.queries += 1
        action = self.queue.pop()
        self.previous = executed_state(self.space, action)
        index = self.execute(action)
        self.idle_steps += index is None
        return index


class RandomController:
    """A uniformly random env action every step, seeded per episode."""

    def start(self, env: Any, seed: int, instruction: str) -> None:
        self.count = int(env.action_space.n)
        self.rng = np.random.default_rng([seed, 3])

    def act(self, observation: np.ndarray) -> int | None:
        return int(self.rng.integers(self.count))


class ExpertController:
    """The scripted expert that recorded the training data (it reads the simulator's state)."""

    def __init__(self, wander: float = 0.0):
        self.wander = wander

    def start(self, env: Any, seed: int, instruction: str) -> None:
        self.world = env.unwrapped
        spec = getattr(env, "spec", None)
        self.goal = getattr(self.world, SUPPORTED_ENVS.get(spec.id if spec else "", "box"))
        self.expert = GoToExpert.for_env(env, seed, self.wander)

    def act(self, observation: np.ndarray) -> int | None:
        name = self.expert.act(self.world.agent.pos, self.world.agent.dir, self.goal.pos)
        return int(getattr(self.world.actions, name))


@attrs.frozen
class EpisodeResult:
    policy: str
    seed: int
    success: bool
    steps: int  # control steps taken (idle ones included)
    env_steps: int
    seconds: float  # wall time of the episode
    frames: list[np.ndarray] | None = attrs.field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "seed": self.seed, "success": self.success, "steps": self.steps,
                "env_steps": self.env_steps, "seconds": round(self.seconds, 3)}


class MiniworldEpisode:
    """One episode from ``env.reset(seed=seed)``: steps the env for an action index (``None``: an
    idle step, the env stays) and keeps the last reward, the env steps and, optionally, the frames."""

    def __init__(self, env: Any, seed: int, *, keep_frames: bool):
        self.env = env
        self.current, _ = env.reset(seed=seed)
        self.reward = 0.0
        self.env_steps = 0
        self.frames = [self.current] if keep_frames else None

    def apply(self, index: int | None) -> bool:
        """Executes ``index``; True when the env ended the episode."""
        done = False
        if index is not None:
            self.current, self.reward, terminated, truncated, _ = self.env.step(index)
            self.env_steps += 1
            done = bool(terminated or truncated)
        if self.frames is not None:
            self.frames.append(self.current)
        return done


def play(env: Any, controller: Controller, seed: int, max_steps: int, instruction: str, *,
         policy: str = "", keep_frames: bool = False) -> EpisodeResult:
    """One episode from ``env.reset(seed=seed)`` until the env ends it or ``max_steps`` steps."""
    started = time.perf_counter()
    episode = MiniworldEpisode(env, seed, keep_frames=keep_frames)
    controller.start(env, seed, instruction)
    steps = 0
    for steps in range(1, max_steps + 1):
        if episode.apply(controller.act(episode.current)):
            break
    return EpisodeResult(policy, seed, bool(episode.reward > 0), steps, episode.env_steps,
                         time.perf_counter() - started, episode.frames)


class MiniworldControl(MiniworldEpisode):
    """A Miniworld episode as the asynchronous client's :class:`~qvl_vla_flow.client.ControlEnv`."""

    def __init__(self, env: Any, seed: int, space: ActionSpace, execute: MiniworldExecutor, *, keep_frames: bool):
        super().__init__(env, seed, keep_frames=keep_frames)
        self.space = space
        self.execute = execute
        self.state = rest_action(space)

    def observation(self) -> tuple[np.ndarray, np.ndarray]:
        return self.current, self.state

    def step(self, action: np.ndarray) -> bool:
        self.state = executed_state(self.space, action)
        return self.apply(self.execute(action))


def play_remote(env: Any, actor: Any, space: ActionSpace, seed: int, max_steps: int, mouse_turn: float = 0.0, *,
                keep_frames: bool = False) -> EpisodeResult:
    """One episode through a policy server: the client executes its queue while it asks ahead."""
    control = MiniworldControl(env, seed, space, MiniworldExecutor.for_env(space, env, mouse_turn),
                               keep_frames=keep_frames)
    stats = actor.run(control, max_steps)
    return EpisodeResult("model", seed, bool(control.reward > 0), stats.steps, control.env_steps, stats.elapsed_s,
                         control.frames)


def wilson_interval(successes: int, episodes: int, z: float = 1.96) -> tuple[float, float]:
    """The 95 % Wilson score interval of a success rate."""
    if episodes == 0:
        return (0.0, 1.0)
    p = successes / episodes
    denominator = 1 + z * z / episodes
    centre = (p + z * z / (2 * episodes)) / denominator
    half = z * math.sqrt(p * (1 - p) / episodes + z * z / (4 * episodes * episodes)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarise(results: Sequence[EpisodeResult], fps: float) -> dict[str, Any]:
    """Success rate (with its interval), episode length and time to success of one policy."""
    wins = [r for r in results if r.success]
    low, high = wilson_interval(len(wins), len(results))
    summary: dict[str, Any] = {
        "episodes": len(results), "successes": len(wins),
        "success_rate": len(wins) / len(results) if results else 0.0, "ci95": [round(low, 4), round(high, 4)],
        "mean_steps": float(np.mean([r.steps for r in results])) if results else 0.0,
        "steps_to_success": float(np.mean([r.steps for r in wins])) if wins else None,
        "seconds_to_success": float(np.mean([r.steps for r in wins])) / fps if wins else None,
        "wall_seconds_per_step": float(sum(r.seconds for r in results) / max(1, sum(r.steps for r in results))),
    }
    return summary


def rollout_seeds(config: RunConfig, episodes: int, offset: int = 0) -> list[int]:
    """Env seeds of the rollout; refused when they overlap the seeds the recordings were made with."""
    settings, recorded = config.task.rollout, config.task.record
    first = settings.seed + offset
    seeds = list(range(first, first + episodes))
    recorded_seeds = range(recorded.seed, recorded.seed + recorded.episodes)
    if not config.task.recordings_dir and seeds[0] < recorded_seeds.stop and recorded_seeds.start <= seeds[-1]:
        raise qvl.UserError(
            f"task.rollout.seed = {settings.seed}: the rollout's env seeds {seeds[0]}..{seeds[-1]} overlap the "
            f"recorded episodes' seeds {recorded_seeds.start}..{recorded_seeds.stop - 1} (task.record.seed, "
            f"task.record.episodes); choose seeds the policy has not seen")
    return seeds


def rollout_env(config: RunConfig) -> str:
    env = config.task.rollout.env or config.task.record.env
    if env not in SUPPORTED_ENVS:
        raise qvl.UserError(f"task.rollout.env = {env!r}: rollouts play {', '.join(SUPPORTED_ENVS)} "
                            "(the scripted expert and the success signal are defined there)")
    return env


def rollout_instruction(config: RunConfig) -> str:
    """The instruction the policy is given: the recordings' (``task.record.instruction``, else the
    env's own goal sentence, as ``record`` wrote it)."""
    if config.task.record.instruction:
        return config.task.record.instruction
    env = make_env(rollout_env(config), 16)
    try:
        env.reset(seed=config.task.rollout.seed)
        return episode_instruction(config, env)
    finally:
        env.close()


def episode_instruction(config: RunConfig, env: Any) -> str:
    """``task.record.instruction``, else the goal sentence of ``env``, as ``record`` writes it."""
    return config.task.record.instruction or default_instruction(env, rollout_env(config))


def controllers(config: RunConfig, policies: Sequence[str], session: PolicySession | None) -> dict[str, Controller]:
    settings = config.task.rollout
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise qvl.UserError(f"task.rollout.policies names {unknown}; expected some of {', '.join(POLICIES)}")
    made: dict[str, Controller] = {}
    for name in policies:
        if name == "model":
            if session is None:
                raise ValueError("the model policy needs a PolicySession")
            made[name] = ModelController(session, config.task.action_space, settings.execute_steps,
                                         settings.mouse_turn)
        elif name == "random":
            made[name] = RandomController()
        else:
            made[name] = ExpertController()
    return made


def run_rollouts(config: RunConfig, session: PolicySession | None, *, policies: Sequence[str] | None = None,
                 episodes: int | None = None, seed_offset: int = 0, keep_frames: int = 0,
                 progress: bool = True) -> dict[str, list[EpisodeResult]]:
    """Every policy on the same seeds; the first ``keep_frames`` episodes of each keep their frames."""
    from tqdm.auto import tqdm

    settings = config.task.rollout
    env_id = rollout_env(config)
    seeds = rollout_seeds(config, episodes or settings.episodes, seed_offset)
    env = make_env(env_id, config.task.record.canvas, settings.max_steps)
    results: dict[str, list[EpisodeResult]] = {}
    try:
        instruction = episode_instruction(config, env)
        names = list(policies or settings.policies)
        remote = settings.server and "model" in names
        local = controllers(config, [n for n in names if not (remote and n == "model")], session)
        for name in names:
            played: list[EpisodeResult] = []
            bar = tqdm(seeds, desc=f"rollout {name}", unit="episode", disable=not progress, leave=False)
            with ExitStack() as stack:
                actor = stack.enter_context(_remote_actor(config)) if remote and name == "model" else None
                for i, seed in enumerate(bar):
                    if actor is not None:
                        played.append(play_remote(env, actor, config.task.action_space, seed, settings.max_steps,
                                                  settings.mouse_turn, keep_frames=i < keep_frames))
                    else:
                        played.append(play(env, local[name], seed, settings.max_steps, instruction, policy=name,
                                           keep_frames=i < keep_frames))
                    bar.set_postfix(success=f"{np.mean([r.success for r in played]):.2f}")
            results[name] = played
    finally:
        env.close()
    return results


@contextmanager
def _remote_actor(config: RunConfig) -> Iterator[Any]:
    """The asynchronous client of ``task.rollout.server``."""
    from qvl_vla_flow.client import AsyncActor, ChunkQueue, PolicyClient
    from qvl_vla_flow.policy_backend import policy_token

    from websockets.exceptions import WebSocketException

    from qvl_vla_flow.client import PolicyServerError
    from qvl_vla_flow.transport import TransportError

    settings = config.task.rollout
    where = f"task.rollout.server = {settings.server!r}"
    if not settings.server.startswith(("ws://", "wss://")):
        raise qvl.UserError(f"{where}: expected a websocket URL such as ws://127.0.0.1:8765")
    try:
        client = PolicyClient(settings.server, policy_token(settings.token))
        client.connect()
    except (OSError, PolicyServerError, TransportError, ValueError, WebSocketException) as exc:
        raise qvl.UserError(f"{where}: no session on the policy server ({exc}); start one with 'qvl run "
                            "vla_flow serve' (and pass its token: task.rollout.token or QVL_POLICY_TOKEN)") from exc
    try:
        space, t = config.task.action_space, config.task
        served = {"action_dim": client.action_dim, "num_frames": client.num_frames, "frame_skip": client.frame_skip,
                  "action_names": (client.metadata or {}).get("action_names")}
        expected = {"action_dim": space.dim, "num_frames": t.num_frames, "frame_skip": t.frame_skip,
                    "action_names": space.names}
        different = {k: (served[k], expected[k]) for k in expected if served[k] != expected[k]}
        if different:
            raise qvl.UserError(f"{where}: the served policy does not match this run's settings (served, expected): "
                                f"{different}")
        yield AsyncActor(client, ChunkQueue(threshold=settings.ask_ahead), control_period_s=settings.control_period_s)
    except (OSError, PolicyServerError, TransportError, RuntimeError) as exc:
        raise qvl.UserError(f"{where}: the policy server stopped answering ({exc})") from exc
    finally:
        client.close()


def write_rollout(config: RunConfig, results: dict[str, list[EpisodeResult]], out: Path, *,
                  checkpoint: str, save_vis: bool) -> dict[str, Any]:
    """``rollout.json``, ``episodes.jsonl``, ``success.png`` (and videos, frames) in ``out``."""
    from qvl_vla_flow.capture import write_video

    fps = config.task.record.fps
    first = next(iter(results.values()))
    summary = {
        "env": rollout_env(config), "checkpoint": checkpoint,
        "seeds": [first[0].seed, first[-1].seed],
        "max_steps": config.task.rollout.max_steps, "execute_steps": config.task.rollout.execute_steps,
        "sampler": f"{config.task.sampler}/{config.task.sampling_steps}",
        "policies": {name: summarise(played, fps) for name, played in results.items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "episodes.jsonl", "".join(json.dumps(r.to_dict()) + "\n" for played in results.values()
                                                for r in played))
    plots = [str(plot_success(summary, out / "success.png"))]
    if save_vis:
        videos = out / "videos"
        videos.mkdir(exist_ok=True)
        for name, played in results.items():
            for result in played:
                if result.frames:
                    path = videos / f"{name}_seed{result.seed}_{'success' if result.success else 'failure'}.mp4"
                    tmp = path.with_name(path.name + ".tmp.mp4")
                    write_video(tmp, result.frames, result.frames[0].shape, fps)
                    tmp.replace(path)
        strip = plot_frames(results, out / "frames.png")
        if strip is not None:
            plots.append(str(strip))
    summary["plots"] = plots
    _write_text(out / "rollout.json", json.dumps(summary, indent=2))
    return summary


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def plot_success(summary: dict[str, Any], path: Path) -> Path:
    """Bars of success rate per policy with their 95 % intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policies = summary["policies"]
    names = list(policies)
    rates = [policies[n]["success_rate"] for n in names]
    errors = [[r - policies[n]["ci95"][0] for n, r in zip(names, rates)],
              [policies[n]["ci95"][1] - r for n, r in zip(names, rates)]]
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.bar(names, rates, yerr=errors, capsize=6, color=["tab:blue", "tab:gray", "tab:green"][: len(names)])
    for i, (rate, name) in enumerate(zip(rates, names)):
        ax.text(i, policies[name]["ci95"][1] + 0.02, f"{rate:.0%}", ha="center", va="bottom")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("success rate (95 % CI)")
    episodes = policies[names[0]]["episodes"]
    ax.set_title(f"{summary['env']}: {episodes} unseen seeds", fontsize=9)
    return _save(fig, path, dpi=110)


def plot_frames(results: dict[str, list[EpisodeResult]], path: Path, count: int = 8) -> Path | None:
    """A strip of ``count`` frames of the first kept episode of each policy (model's first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, next((r for r in played if r.frames), None)) for name, played in results.items()]
    rows = [(name, r) for name, r in rows if r is not None]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), count, figsize=(1.6 * count, 1.75 * len(rows)), squeeze=False)
    for row, (name, result) in enumerate(rows):
        picks = np.linspace(0, len(result.frames) - 1, count).round().astype(int)
        for col, index in enumerate(picks):
            ax = axes[row][col]
            ax.imshow(result.frames[index])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"step {index}", fontsize=7)
        axes[row][0].set_ylabel(f"{name}\n{'success' if result.success else 'failure'}", fontsize=8)
    return _save(fig, path, dpi=90)


def _save(fig: Any, path: Path, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=dpi)
    plt.close(fig)
    tmp.replace(path)
    return path


def format_table(summary: dict[str, Any]) -> str:
    lines = [f"{'policy':8s} {'success':>9s} {'95% CI':>15s} {'mean steps':>11s} {'steps to success':>17s}"]
    for name, s in summary["policies"].items():
        to_success = f"{s['steps_to_success']:.1f}" if s["steps_to_success"] is not None else "-"
        lines.append(f"{name:8s} {s['successes']:>3d}/{s['episodes']:<3d}{s['success_rate']:>5.0%} "
                     f"[{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] {s['mean_steps']:>11.1f} {to_success:>17s}")
    return "\n".join(lines)


def rollout_stage(config: RunConfig, head: Any, run_dir: Path, checkpoint: Path, save_vis: bool) -> dict[str, Any]:
    """``qvl run vla_flow rollout``: the run's checkpoint (best by default) against random and expert."""
    from qvl_vla_flow.session import PolicySession

    settings = config.task.rollout
    local_model = "model" in settings.policies and not settings.server
    session = PolicySession.for_run(config, head) if local_model else None
    results = run_rollouts(config, session, keep_frames=settings.videos if save_vis else 0)
    out = Path(run_dir) / "rollout" / f"{checkpoint.name}-{rollout_env(config)}"
    summary = write_rollout(config, results, out, checkpoint=checkpoint.name, save_vis=save_vis)
    print(format_table(summary))
    print(f"written: {out / 'rollout.json'}")
    return summary


def validation_rollout(config: RunConfig, head: Any, accelerator: Any, out_dir: Path) -> dict[str, float]:
    """``val/success`` and ``val/rollout_steps`` of the model alone on ``validate_episodes`` seeds
    other than the rollout stage's (the main process plays; the others get its numbers)."""
    from qvl_vla_flow.session import PolicySession

    from qvl_vla_flow.record import import_miniworld

    metrics = None
    if accelerator.is_main_process:
        try:
            import_miniworld()
        except qvl.UserError as exc:
            raise qvl.UserError(f"{exc}; or train without validation rollouts: --set task.rollout.validate_episodes=0 "
                                "--set train.best_metric=val/mse --set train.best_mode=min") from exc
        # the model being trained, in this process: never a policy server, never compiled (its
        # forward is the training one)
        config = attrs.evolve(config, task=attrs.evolve(
            config.task, compile_expert=False, rollout=attrs.evolve(config.task.rollout, server="")))
        session = PolicySession.for_run(config, head)
        played = run_rollouts(config, session, policies=["model"], episodes=config.task.rollout.validate_episodes,
                              seed_offset=VALIDATION_SEED_OFFSET, progress=False)["model"]
        metrics = {"val/success": float(np.mean([r.success for r in played])),
                   "val/rollout_steps": float(np.mean([r.steps for r in played]))}
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        metrics = broadcast_object_list([metrics])[0]
    return metrics
