"""Closed-loop evaluation: the trained policy plays Miniworld episodes it has never seen.

``qvl run vla_flow rollout`` plays ``task.rollout.episodes`` episodes of ``task.rollout.env`` on
env seeds ``task.rollout.seed ...`` (never the recorded ones) with each of
``task.rollout.policies`` (:mod:`~qvl_vla_flow.controllers`: the trained ``model``, ``random``,
the scripted ``expert``), the same seeds for each, so the table reads model against random
against expert. Each episode is played by :mod:`~qvl_vla_flow.play` (with ``task.rollout.server``
the model is the asynchronous client of a policy server); :mod:`~qvl_vla_flow.rollout_report`
sums them up (success rates with a 95 % Wilson interval).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

import qvl
from qvl.data import write_json, write_jsonl
from qvl_vla_flow.controllers import controllers
from qvl_vla_flow.play import play, play_remote
from qvl_vla_flow.record import SUPPORTED_ENVS, default_instruction, make_env
from qvl_vla_flow.rollout_report import format_table, plot_frames, plot_success, summarise

if TYPE_CHECKING:
    from qvl.config import RunConfig

    from qvl_vla_flow.play import EpisodeResult
    from qvl_vla_flow.session import PolicySession

VALIDATION_SEED_OFFSET = 500_000  # validation rollouts play other seeds than the rollout stage


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
    from websockets.exceptions import WebSocketException

    from qvl_vla_flow.async_actor import AsyncActor
    from qvl_vla_flow.chunk_queue import ChunkQueue
    from qvl_vla_flow.client import PolicyClient, PolicyServerError
    from qvl_vla_flow.protocol import policy_token
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
    from qvl_vla_flow.capture_format import write_video

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
    write_jsonl(out / "episodes.jsonl", (r.to_dict() for played in results.values() for r in played))
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
    write_json(out / "rollout.json", summary, indent=2)
    return summary


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
    from qvl_vla_flow.record import import_miniworld
    from qvl_vla_flow.session import PolicySession

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
