"""One episode of Miniworld from ``env.reset(seed=seed)``: played by a controller, step by step, or by
the asynchronous client of a policy server on its own control clock.

An episode succeeds when its last reward is above 0 (Miniworld's ``terminated`` also ends some
failures); ``max_steps`` steps without success is a timeout.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from qvl_vla_flow.executor import MiniworldExecutor, executed_state
from qvl_vla_flow.samples import rest_action

if TYPE_CHECKING:
    from qvl_vla_flow.actions import ActionSpace
    from qvl_vla_flow.controllers import Controller


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
    """A Miniworld episode as the asynchronous client's :class:`~qvl_vla_flow.async_actor.ControlEnv`."""

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
