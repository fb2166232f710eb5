"""The action queue of asynchronous chunked control (LeRobot's async client), pure logic without I/O:
when to ask for a new chunk, which observations to skip, how a new chunk is merged into what is
queued. :class:`~qvl_vla_flow.async_actor.AsyncActor` runs it against a policy server.
"""

from __future__ import annotations

import numpy as np


class ChunkQueue:
    """The queue of ``(timestep, action)`` of asynchronous chunked control (no I/O).

    * :meth:`needs_observation`: ask for a new chunk once ``len(queue) <= threshold * chunk_size``
      (``threshold`` is LeRobot's ``g``: 0 asks only when empty, i.e. synchronous control; 1 asks every
      tick). Too low and the queue runs dry before the answer comes (the client waits); too high and
      it spends compute on chunks mostly overwritten.
    * :meth:`should_send`: skip an observation whose mean absolute pixel difference from the last one
      sent is below ``similarity`` (0-255 scale; default 1.0, about the noise of a lossy video frame:
      a static screen is not re-sent). The first observation, the first after :meth:`reset`, and any
      taken while the queue is empty are always sent, so a still scene cannot starve the loop.
    * :meth:`merge`: a chunk computed from the observation at ``start_step`` arrives at ``now_step``:
      its actions for timesteps before ``now_step`` are stale and dropped (all of them: the chunk is
      dropped). Where it overlaps actions still queued the two are blended: a float ``blend`` is a
      constant weight of the new chunk (default 0.7, LeRobot's ``weighted_average``: the newest
      observation decides, the old plan only smooths; 1.0 replaces); ``blend="ramp"`` raises the new
      chunk's weight linearly over the ``k`` overlapping steps, ``(j + 1) / (k + 1)`` at the
      ``j``-th, a jump-free hand-over that however executes mostly the *old* plan in the near term
      (in Miniworld it lost most of the success rate of asking ahead). Blending key channels (+1/-1)
      is fine: they are thresholded at 0 when executed.
    """

    def __init__(self, threshold: float = 0.5, similarity: float = 1.0, blend: str | float = 0.7) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if blend != "ramp" and not (isinstance(blend, (int, float)) and 0.0 <= blend <= 1.0):
            raise ValueError(f"blend must be 'ramp' or a weight in [0, 1], got {blend!r}")
        self.threshold = float(threshold)
        self.similarity = float(similarity)
        self.blend = blend
        self._actions: dict[int, np.ndarray] = {}  # timestep -> action, in timestep order
        self._last_sent: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self._actions)

    def reset(self) -> None:
        """A new episode (or a fresh server session): nothing queued, the next observation is sent."""
        self._actions.clear()
        self._last_sent = None

    def needs_observation(self, chunk_size: int) -> bool:
        return len(self._actions) <= self.threshold * chunk_size

    def should_send(self, image: np.ndarray) -> bool:
        if self._last_sent is None or not self._actions or self._last_sent.shape != image.shape:
            return True
        difference = np.abs(image.astype(np.int16) - self._last_sent.astype(np.int16)).mean()
        return bool(difference >= self.similarity)

    def mark_sent(self, image: np.ndarray) -> None:
        self._last_sent = np.array(image, copy=True)

    def merge(self, start_step: int, actions: np.ndarray, now_step: int) -> int:
        """Merges the chunk whose first action is for ``start_step``; returns how many of its actions were used
        (0: all stale)."""
        actions = np.asarray(actions, dtype=np.float32)
        first = max(now_step - start_step, 0)
        if first >= len(actions):
            return 0
        incoming = {start_step + i: actions[i] for i in range(first, len(actions))}
        queued = {t: a for t, a in self._actions.items() if t >= now_step}
        overlap = sorted(t for t in incoming if t in queued)
        for j, t in enumerate(overlap):
            weight = (j + 1) / (len(overlap) + 1) if self.blend == "ramp" else float(self.blend)
            incoming[t] = (1.0 - weight) * queued[t] + weight * incoming[t]
        queued.update(incoming)  # queued actions beyond the new chunk's end are kept
        self._actions = dict(sorted(queued.items()))
        return len(incoming)

    def pop(self, now_step: int) -> np.ndarray | None:
        """The action for ``now_step`` (dropping anything older), or None when there is none."""
        for t in [t for t in self._actions if t < now_step]:
            del self._actions[t]
        return self._actions.pop(now_step, None)
