"""The client side of the policy server: a reconnecting websocket client, the action queue of asynchronous
control, and the control loop that ties them to an environment.

* :class:`PolicyClient` speaks the protocol of :mod:`qvl_vla_flow.server` synchronously
  (``websockets.sync``). It remembers which frames (by step) the server session has, so an
  observation carries only the frames of its window the server lacks. A dropped connection is
  reopened with bounded exponential back-off and the request retried; the hello names the old
  session, and when the server no longer has it (restarted, idled out) the next observation
  carries its whole window again; :attr:`PolicyClient.reconnects` counts the reconnects.
* :class:`ChunkQueue` is the pure logic of asynchronous inference (LeRobot's async client): when to
  ask for a new chunk, which observations to skip, how a new chunk is merged into what is queued.
* :class:`AsyncActor` runs an episode at a fixed control period while a background thread fetches
  chunks, keeping every tick's frame for as long as a window may read it; with
  ``ChunkQueue(threshold=0)`` it is plain synchronous chunked control (ask only when the queue is
  empty, wait for the answer), the baseline of ``benchmarks/bench_vla_flow_async.py``.
"""

from __future__ import annotations

import itertools
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from qvl_vla_flow.samples import window_steps
from qvl_vla_flow.server import window_geometry
from qvl_vla_flow.transport import DEFAULT_MAX_BYTES, TransportError, pack, unpack

log = logging.getLogger(__name__)

# what a broken or unreachable connection raises (TimeoutError and ConnectionError are OSErrors)
NETWORK_ERRORS = (OSError, WebSocketException)
T = TypeVar("T")


class PolicyServerError(RuntimeError):
    """The server answered with an error: a refused hello (token, server full), a rejected request, a backend
    failure. Not retried: the same request would fail again."""

    def __init__(self, message: str, request: int | None = None) -> None:
        super().__init__(message)
        self.request = request


class PolicyClient:
    """One session on a policy server.

    ``timeout_s`` bounds connecting and each reply; a failed connection or request is retried up to
    ``max_retries`` times, sleeping ``backoff_s * 2**k`` (at most ``max_backoff_s``) before retry ``k+1``,
    then :class:`ConnectionError` is raised. Thread-safe (one request at a time).

    The policy reads a window of frames (:meth:`window_steps`; the geometry, :attr:`num_frames` and
    :attr:`frame_skip`, comes from the server on connect). :meth:`infer` is given the frames of the
    window and sends only those the server session does not have yet (the newest always), so over a
    session each frame is sent once. After a reconnect :attr:`reconnects` grows by one and
    :attr:`resumed` says whether the server still had the session; when it did not, its frames are
    gone and the next observation carries its whole window again. :attr:`frames_sent` counts the
    frames sent.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 10.0, max_retries: int = 5,
                 backoff_s: float = 0.1, max_backoff_s: float = 2.0,
                 max_message_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._uri = parse_uri(url)  # raises InvalidURI (a ValueError) now, not at the first request
        self.url = url
        self.token = token
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_message_bytes = int(max_message_bytes)
        self.session_id: str | None = None
        self.resumed = False
        self.reconnects = 0
        self.chunk_size: int | None = None
        self.action_dim: int | None = None
        self.metadata: dict[str, Any] = {}
        self.num_frames: int | None = None
        self.frame_skip: int | None = None
        self.last_server_ms: float | None = None
        self.frames_sent = 0
        self._sent: set[int] = set()  # steps whose frames the server session has (as far as a window reads them)
        self._sessions_opened = 0
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._aborted = False
        self._ws: ClientConnection | None = None
        self._stack: ExitStack | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    def connect(self) -> PolicyClient:
        """Opens the session (with retries) unless it is open; fills :attr:`chunk_size`, :attr:`action_dim`,
        :attr:`metadata`, :attr:`num_frames`, :attr:`frame_skip`."""
        with self._lock:
            self._aborted = False
            self._with_retries(lambda: None)
        return self

    def abort(self) -> None:
        """From another thread: ends the request in progress (its caller gets a ``ConnectionError``)
        and its retries, without waiting for it; :meth:`connect` makes the client usable again."""
        self._aborted = True
        ws = self._ws
        if ws is not None:
            try:
                ws.close()  # websockets' connections may be closed from any thread: the waiting recv raises
            except Exception:  # already broken: the request fails anyway
                pass

    def reset(self) -> None:
        """A new episode: the server session forgets its frames (steps may start again from 0)."""
        with self._lock:
            self._sent.clear()
            self._with_retries(lambda: self._exchange({"type": "reset"}, "reset_done"))

    def window_steps(self, step: int) -> list[int]:
        """The steps whose frames the policy reads for a chunk at ``step``, oldest first (connects if needed)."""
        with self._lock:
            if self.num_frames is None:
                self.connect()
            return window_steps(int(step), self.num_frames, self.frame_skip)

    def infer(self, frames: Mapping[int, np.ndarray] | np.ndarray, state: np.ndarray,
              step: int) -> tuple[int, np.ndarray]:
        """The chunk for the observation at ``step``: ``(start_step, actions float32 [C, A])``, where
        ``start_step`` is the timestep of ``actions[0]`` (``step``).

        :param frames: step -> uint8 ``[H, W, 3]``, the frames of (at least) the window's steps this server
            session has not had yet, ``step`` always among them; a caller that keeps the last
            :meth:`window_steps` frames passes them all and the client picks. A single image is the frame
            of ``step``: enough when the rest of the window was sent before (or the window is one frame).
            Missing frames raise :class:`ValueError` (after a reconnect to a fresh session too: the
            whole window is needed then).
        :param state: float32 ``[A]``.
        :param step: never below that of an earlier call since the last :meth:`reset` (the server refuses it).
        """
        step = int(step)
        given = {step: frames} if isinstance(frames, np.ndarray) else {int(s): f for s, f in frames.items()}
        state = np.ascontiguousarray(state, dtype=np.float32)
        with self._lock:
            reply = self._with_retries(lambda: self._observe(given, state, step))
            self.last_server_ms = float(reply.get("server_ms", math.nan))
        return int(reply["step"]), np.asarray(reply["actions"], dtype=np.float32)

    def close(self) -> None:
        """Closes the connection cleanly, so the server frees the session at once."""
        with self._lock:
            self._disconnect()
            self.session_id = None
            self._sessions_opened = 0
            self._sent.clear()

    def __enter__(self) -> PolicyClient:
        return self.connect()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _with_retries(self, action: Callable[[], T]) -> T:
        failures = 0
        while True:
            if self._aborted:
                raise ConnectionError(f"requests to the policy server at {self.url} were aborted")
            try:
                if self._ws is None:
                    self._open()
                return action()
            except NETWORK_ERRORS as exc:
                self._disconnect()
                failures += 1
                if failures > self.max_retries:
                    raise ConnectionError(f"policy server at {self.url} unreachable after {failures} attempts "
                                          f"({type(exc).__name__}: {exc})") from exc
                delay = min(self.backoff_s * 2 ** (failures - 1), self.max_backoff_s)
                log.info("policy server connection failed (%s: %s); retrying in %.2f s", type(exc).__name__, exc, delay)
                time.sleep(delay)

    def _open(self) -> None:
        # our own socket: no proxy from the environment on a control link, TCP_NODELAY for small messages
        sock = socket.create_connection((self._uri.host, self._uri.port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stack = ExitStack()
        try:
            ws = stack.enter_context(connect(self.url, sock=sock, open_timeout=self.timeout_s, compression=None,
                                             close_timeout=min(self.timeout_s, 2.0), max_size=self.max_message_bytes))
            ws.send(pack({"type": "hello", "token": self.token, "session": self.session_id}))
            reply = unpack(ws.recv(timeout=self.timeout_s), max_bytes=self.max_message_bytes)
        except BaseException:
            stack.close()
            sock.close()
            raise
        if reply.get("type") != "ready":
            stack.close()
            if reply.get("type") == "error":
                raise PolicyServerError(f"policy server at {self.url} refused the session: {reply.get('message')}")
            raise TransportError(f"expected a ready reply to hello, got type {reply.get('type')!r}")
        try:
            geometry = window_geometry(reply.get("metadata"))
        except ValueError as exc:
            stack.close()
            raise TransportError(f"policy server at {self.url}: {exc}") from exc
        self._ws, self._stack = ws, stack
        self.session_id = str(reply["session"])
        self.resumed = bool(reply.get("resumed", False))
        self.chunk_size, self.action_dim = int(reply["chunk_size"]), int(reply["action_dim"])
        self.metadata = dict(reply.get("metadata") or {})
        self.num_frames, self.frame_skip = geometry
        if not self.resumed:
            self._sent.clear()  # a fresh session has no frames: the next observation sends its whole window
        self._sessions_opened += 1
        if self._sessions_opened > 1:
            self.reconnects += 1
            log.info("reconnected to %s (session %s, %s)", self.url, self.session_id,
                     "resumed" if self.resumed else "new: the next observation re-sends its whole window")

    def _observe(self, given: dict[int, np.ndarray], state: np.ndarray, step: int) -> dict[str, Any]:
        """One observe exchange on the open connection, with the window frames the server session lacks."""
        assert self.num_frames is not None and self.frame_skip is not None
        needed = sorted(s for s in set(window_steps(step, self.num_frames, self.frame_skip))
                        if s == step or s not in self._sent)
        missing = [s for s in needed if s not in given]
        if missing:
            raise ValueError(f"the window at step {step} needs the frames of steps {missing}, which were neither "
                             f"given nor sent to this server session before (given steps {sorted(given)})")
        frames = [{"step": s, "image": np.ascontiguousarray(given[s], dtype=np.uint8)} for s in needed]
        reply = self._exchange({"type": "observe", "step": step, "frames": frames, "state": state}, "chunk")
        self.frames_sent += len(frames)
        self._sent.update(needed)
        # the server session forgets frames no later window reads: older than the newest step's window
        oldest = max(self._sent) - (self.num_frames - 1) * self.frame_skip
        self._sent = {s for s in self._sent if s >= oldest}
        return reply

    def _exchange(self, message: dict[str, Any], expect: str) -> dict[str, Any]:
        assert self._ws is not None
        request = next(self._ids)
        self._ws.send(pack({**message, "request": request}))
        deadline = time.monotonic() + self.timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no reply from the policy server within {self.timeout_s:g} s")
            reply = unpack(self._ws.recv(timeout=remaining), max_bytes=self.max_message_bytes)
            if reply.get("type") == "error" and reply.get("request") in (request, None):
                raise PolicyServerError(str(reply.get("message")), request)
            if reply.get("request") != request:
                continue  # a late answer to an earlier request
            if reply.get("type") != expect:
                raise TransportError(f"expected a {expect} reply, got type {reply.get('type')!r}")
            return reply

    def _disconnect(self) -> None:
        stack, self._ws, self._stack = self._stack, None, None
        if stack is not None:
            try:
                stack.close()
            except Exception:  # closing a broken connection: nothing more to do
                pass


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
