"""The client side of the policy server: one session, over a reconnecting websocket.

:class:`PolicyClient` speaks the protocol of :mod:`qvl_vla_flow.protocol` synchronously
(``websockets.sync``). It remembers which frames (by step) the server session has, so an
observation carries only the frames of its window the server lacks. A dropped connection is
reopened with bounded exponential back-off and the request retried; the hello names the old
session, and when the server no longer has it (restarted, idled out) the next observation
carries its whole window again; :attr:`PolicyClient.reconnects` counts the reconnects.

The asynchronous control loop on top of it is :class:`~qvl_vla_flow.async_actor.AsyncActor`,
its action queue :class:`~qvl_vla_flow.chunk_queue.ChunkQueue`.
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
from typing import Any, TypeVar

import numpy as np
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect
from websockets.uri import parse_uri

from qvl_vla_flow.protocol import window_geometry
from qvl_vla_flow.samples import window_steps
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
