"""From action vectors to Miniworld: what a key state does in the simulator, the chunk queue, and
the state an executed action leaves.

The policy predicts mouse-and-keyboard vectors (``actions.py``); Miniworld takes one discrete
action per step. :class:`MiniworldExecutor` maps a vector the way Miniworld's manual control maps
keys (the strongest pressed key it knows: arrows turn and move, Page Up / Down pick up and drop,
Enter is done) and, when configured, horizontal mouse movement to turning (mouse-look). A vector
that presses nothing does nothing: the step passes without an env step, as an idle keyboard
would (it still counts towards the episode's time limit).

:class:`ActionQueue` is the synchronous client's FIFO: a chunk of ``C`` actions comes in, only its
first ``execute_steps`` go out before the policy is asked again (SmolVLA's finding: executing
whole chunks open-loop loses most of the success rate).

:func:`executed_state` is what the next state token shows once an action was executed: its keys
and buttons as pressed or not (+-1), its mouse as predicted.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from qvl_vla_flow.actions import MOUSE_DIMS, ActionSpace, miniworld_action

MOUSE_DX = MOUSE_DIMS.index("mouse_dx")


class MiniworldExecutor:
    """Action vector -> a Miniworld action index, or ``None`` for no action this step.

    :param actions: the env's ``Actions`` enum (``env.unwrapped.actions``).
    :param mouse_turn: when above 0, a frame whose ``mouse_dx`` exceeds it in magnitude turns
        right (positive) or left (negative) if no key acts; 0 (the default) ignores the mouse,
        as Miniworld's manual control does.
    :param allowed: the env's action count (``env.action_space.n``): an action outside it (the
        policy pressing Page Up in a task without pick-up) is no action.
    """

    def __init__(self, space: ActionSpace, actions: Any, *, mouse_turn: float = 0.0, allowed: int | None = None):
        self.space = space
        self.actions = actions
        self.mouse_turn = mouse_turn
        self.allowed = allowed

    @classmethod
    def for_env(cls, space: ActionSpace, env: Any, mouse_turn: float = 0.0) -> MiniworldExecutor:
        """The executor of a (gymnasium-wrapped) Miniworld env: its actions and its action count."""
        return cls(space, env.unwrapped.actions, mouse_turn=mouse_turn, allowed=int(env.action_space.n))

    def __call__(self, action: Sequence[float]) -> int | None:
        name = miniworld_action(self.space, action)
        if name is None and self.mouse_turn > 0 and abs(float(action[MOUSE_DX])) > self.mouse_turn:
            name = "turn_right" if float(action[MOUSE_DX]) > 0 else "turn_left"
        if name is None:
            return None
        index = int(getattr(self.actions, name))
        if self.allowed is not None and index >= self.allowed:
            return None
        return index


class ActionQueue:
    """FIFO of the actions still to execute; refilled from a chunk's first ``execute_steps``."""

    def __init__(self, execute_steps: int):
        if execute_steps < 1:
            raise ValueError(f"execute_steps must be at least 1, got {execute_steps}")
        self.execute_steps = execute_steps
        self._queue: deque[np.ndarray] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def clear(self) -> None:
        self._queue.clear()

    def refill(self, chunk: np.ndarray) -> None:
        """Replace what is queued by the first ``execute_steps`` actions of ``chunk`` ``[C, A]``."""
        self._queue = deque(np.asarray(chunk, dtype=np.float32)[: self.execute_steps])

    def pop(self) -> np.ndarray:
        if not self._queue:
            raise IndexError("the action queue is empty: refill it from a new chunk")
        return self._queue.popleft()


def executed_state(space: ActionSpace, action: np.ndarray) -> np.ndarray:
    """The vector the next state token shows: binary channels as executed (+-1), mouse as predicted.

    Training states are recorded actions, whose binary channels are exactly -1 or +1.
    """
    state = np.asarray(action, dtype=np.float32).copy()
    binary = space.binary
    state[binary] = np.where(state[binary] > 0, 1.0, -1.0)
    return state
