"""Who chooses each step's env action in a rollout: the trained policy, a random one, the scripted expert.

* ``model``: the trained policy through a :class:`~qvl_vla_flow.session.PolicySession` (each
  frame encoded once, the training window) and an :class:`~qvl_vla_flow.executor.ActionQueue`
  that executes the first ``execute_steps`` actions of each chunk;
* ``random``: a uniformly random env action every step (the env's own action space);
* ``expert``: the scripted expert that recorded the training data.

A step where the policy presses no key is an idle step: time passes, the env does not move.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

import qvl
from qvl_vla_flow.executor import ActionQueue, MiniworldExecutor, executed_state
from qvl_vla_flow.record import SUPPORTED_ENVS, GoToExpert
from qvl_vla_flow.samples import rest_action

if TYPE_CHECKING:
    from qvl.config import RunConfig

    from qvl_vla_flow.actions import ActionSpace
    from qvl_vla_flow.session import PolicySession

POLICIES = ("model", "random", "expert")


class Controller(Protocol):
    """Chooses an env action per step; ``None`` is an idle step."""

    def start(self, env: Any, seed: int, instruction: str) -> None: ...

    def act(self, observation: np.ndarray) -> int | None: ...


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
