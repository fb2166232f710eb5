"""Asynchronous control: an episode run at a fixed control period while a background thread fetches
action chunks from a policy server.

:class:`AsyncActor` executes the :class:`~qvl_vla_flow.chunk_queue.ChunkQueue` tick by tick and
asks :class:`~qvl_vla_flow.client.PolicyClient` for chunks ahead of need, keeping every tick's
frame for as long as a window may read it; with ``ChunkQueue(threshold=0)`` it is plain
synchronous chunked control (ask only when the queue is empty, wait for the answer), the baseline
of ``benchmarks/bench_vla_flow_async.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from qvl_vla_flow.chunk_queue import ChunkQueue
from qvl_vla_flow.client import PolicyClient, PolicyServerError
from qvl_vla_flow.samples import window_steps

log = logging.getLogger(__name__)


class ControlEnv(Protocol):
    """What :class:`AsyncActor` controls."""

    def observation(self) -> tuple[np.ndarray, np.ndarray]:
        """The current ``(image uint8 [H, W, 3], state float32 [A])`` (called once per control tick)."""

    def step(self, action: np.ndarray) -> bool:
        """Executes one action; True when the episode is over."""


@dataclass
class ActorStats:
    """What one :meth:`AsyncActor.run` did. A tick is one control period; a waiting tick is one where the queue
    was empty (no action executed, the step did not advance)."""

    steps: int = 0
    ticks: int = 0
    waiting_ticks: int = 0
    elapsed_s: float = 0.0
    observations_sent: int = 0
    observations_skipped: int = 0
    frames_sent: int = 0
    chunks: int = 0
    stale_chunks: int = 0
    errors: int = 0
    reconnects: int = 0
    round_trip_ms: list[float] = field(default_factory=list)

    @property
    def actions_per_s(self) -> float:
        return self.steps / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def wait_fraction(self) -> float:
        return self.waiting_ticks / self.ticks if self.ticks else 0.0


class AsyncActor:
    """Runs episodes: every ``control_period_s`` the next queued action is executed (or, with the queue empty,
    the tick is spent waiting) while a background thread sends observations through ``client`` when
    ``queue.needs_observation`` says so, one request in flight at a time, and merges the chunks that come back.

    Every tick's frame is kept, by step (a step's latest), for as long as a window may read it
    (``(num_frames - 1) * frame_skip + 1`` steps, the geometry from the server): an observation sent
    at step ``t`` hands the client the whole window (``t - 4, t - 2, t`` by default), though the
    ticks of ``t - 4`` and ``t - 2`` may have sent nothing, and the client sends those the server
    lacks. Whether a tick sends at all is :meth:`ChunkQueue.should_send`'s call, on the tick's frame.

    When the server goes away the loop keeps executing what is queued while the client reconnects with
    back-off (a fresh session gets the whole window with the next observation); the run fails when no
    chunk could be had for ``give_up_after_s`` seconds, or when the queue has been empty that long (a
    server that accepts requests but never answers: the sender may still be inside its retries).
    """

    def __init__(self, client: PolicyClient, queue: ChunkQueue | None = None, *, control_period_s: float = 0.1,
                 give_up_after_s: float = 60.0) -> None:
        self.client = client
        self.queue = queue if queue is not None else ChunkQueue()
        self.control_period_s = float(control_period_s)
        self.give_up_after_s = float(give_up_after_s)
        self._cond = threading.Condition()
        self._pending: tuple[dict[int, np.ndarray], np.ndarray, int] | None = None
        self._frames: dict[int, np.ndarray] = {}  # step -> frame, the last window's worth of steps
        self._geometry = (1, 1)  # (num_frames, frame_skip), from the server
        self._in_flight = False
        self._now = 0
        self._stopping = False
        self._failure: BaseException | None = None
        self._failure_reason = ""
        self._stats = ActorStats()

    def run(self, env: ControlEnv, max_steps: int, *, reset: bool = True) -> ActorStats:
        """One episode of at most ``max_steps`` executed actions, its steps counted from 0 (``reset``: reset
        the client and its server session first; pass False only when the caller has just done so)."""
        self.client.connect()
        if reset:
            self.client.reset()
        chunk_size = int(self.client.chunk_size or 1)
        self._geometry = (int(self.client.num_frames or 1), int(self.client.frame_skip or 1))
        self._frames = {}
        frames_before = self.client.frames_sent
        self.queue.reset()
        self._pending, self._in_flight, self._now, self._stopping, self._failure = None, False, 0, False, None
        stats = self._stats = ActorStats()
        reconnects_before = self.client.reconnects
        sender = threading.Thread(target=self._send_loop, name="policy-sender", daemon=True)
        sender.start()
        started = next_tick = time.perf_counter()
        step = 0
        empty_since: float | None = None
        gave_up = False
        try:
            while step < max_steps:
                with self._cond:
                    if self._failure is not None:
                        raise RuntimeError(f"no action chunk from {self.client.url}: {self._failure_reason}") \
                            from self._failure
                    self._now = step
                    wanted = not self._in_flight and self.queue.needs_observation(chunk_size)
                image, state = env.observation()
                self._record(step, image)
                if wanted:
                    self._offer(image, state, step)
                with self._cond:
                    action = self.queue.pop(step)
                stats.ticks += 1
                if action is None:
                    stats.waiting_ticks += 1
                    empty_since = empty_since or time.monotonic()
                    if time.monotonic() - empty_since > self.give_up_after_s:
                        gave_up = True
                        raise RuntimeError(f"no action chunk from {self.client.url}: nothing to execute for "
                                           f"{self.give_up_after_s:g} s (the server does not answer)")
                else:
                    empty_since = None
                    step += 1
                    stats.steps += 1
                    if env.step(action):
                        break
                next_tick += self.control_period_s
                delay = next_tick - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -self.control_period_s:
                    next_tick = time.perf_counter()  # fell behind (a slow env): do not burst to catch up
        finally:
            stats.elapsed_s = time.perf_counter() - started
            with self._cond:
                self._stopping = True
                self._cond.notify_all()
            if gave_up:  # the sender may be waiting on a server that never answers
                self.client.abort()
            sender.join()
            stats.reconnects = self.client.reconnects - reconnects_before
            stats.frames_sent = self.client.frames_sent - frames_before
        return stats

    def _record(self, step: int, image: np.ndarray) -> None:
        """Keeps the tick's frame (a copy: an env may reuse its buffer) and drops those no window reads any more."""
        self._frames[step] = np.array(image, dtype=np.uint8, copy=True)
        num_frames, frame_skip = self._geometry
        for old in [s for s in self._frames if s < step - (num_frames - 1) * frame_skip]:
            del self._frames[old]

    def _offer(self, image: np.ndarray, state: np.ndarray, step: int) -> None:
        with self._cond:
            if not self.queue.should_send(image):
                self._stats.observations_skipped += 1
                return
            self.queue.mark_sent(image)
            window = {s: self._frames[s] for s in window_steps(step, *self._geometry)}
            self._pending, self._in_flight = (window, state, step), True
            self._stats.observations_sent += 1
            self._cond.notify_all()

    def _send_loop(self) -> None:
        failing_since: float | None = None
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                (frames, state, step), self._pending = self._pending, None
            sent = time.perf_counter()
            try:
                start, actions = self.client.infer(frames, state, step)
            except (PolicyServerError, OSError) as exc:  # OSError: ConnectionError after the client's retries
                log.warning("no chunk for step %d: %s", step, exc)
                failing_since = failing_since or time.monotonic()
                with self._cond:
                    self._stats.errors += 1
                    if time.monotonic() - failing_since > self.give_up_after_s:
                        self._failure = exc
                        self._failure_reason = f"failing for over {self.give_up_after_s:g} s ({exc})"
                    self._in_flight = False
                time.sleep(min(self.control_period_s, self.client.max_backoff_s))  # no busy loop on errors
                continue
            except BaseException as exc:  # a bug, not an outage: stop the run
                with self._cond:
                    self._failure, self._in_flight = exc, False
                    self._failure_reason = f"the sender thread failed ({type(exc).__name__}: {exc})"
                return
            failing_since = None
            with self._cond:
                self._stats.round_trip_ms.append((time.perf_counter() - sent) * 1000.0)
                if self.queue.merge(start, actions, self._now):
                    self._stats.chunks += 1
                else:
                    self._stats.stale_chunks += 1
                self._in_flight = False
