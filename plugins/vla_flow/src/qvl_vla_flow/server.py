"""Serving a policy over websockets: one connection is one session, every message one msgpack map.

The design follows openpi's websocket policy server (metadata on connect, numpy arrays as plain
maps, no pickle: :mod:`qvl_vla_flow.transport`) with LeRobot's per-client policy state. The
messages, the window of frames an observation carries and the checks of them:
:mod:`qvl_vla_flow.protocol`.

Errors never stop the server, nor (except a refused hello) the connection: after an error reply the
connection keeps serving, even when the bytes were not msgpack at all. Messages larger than
``max_message_bytes`` get an error reply; messages larger than four times that are refused by the
websocket layer itself, which closes the connection with code 1009 (a bound on memory per peer).

Authentication: with a ``token`` the hello must carry it (compared in constant time); a wrong or
missing token gets an error reply and the connection is closed (code 1008). Binding to anything
but a loopback address without a token is refused (:class:`qvl.UserError`). The token travels in
clear over ``ws://``: off a trusted network put the server behind TLS.

Sessions: ``hello`` opens one (``backend.open_session()``) or, when it names a session that still
exists and has no connection, resumes it (``"resumed": true``, its frames and cached features kept;
a client whose session was not resumed must send whole windows again). A
session is freed

* when its client closes the connection cleanly (a close frame: :meth:`PolicyClient.close`);
* after ``idle_timeout_s`` without a message (its connection, if any, is closed with code 1000);
* when the server is full and needs the slot: at ``max_sessions``, a new session evicts the least
  recently used session *without a connection*; when every session has a live connection the new
  connection is refused (error reply, close code 1013) rather than breaking a running client.

A connection that drops without a close frame (network failure, a killed client) leaves its
session detached, resumable until it idles out or is evicted. A backend session with a ``close()``
method has it called when the session is freed.

Backend calls (opening a session, ``reset``, ``act``) run on one worker thread: they are CPU/GPU
bound, one model must not run in two threads at once, and the event loop stays free to answer
pings, handshakes and other sessions' messages meanwhile.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from qvl import UserError
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from qvl_vla_flow.protocol import (PolicyBackend, PolicySessionLike, RejectedMessage, describe_value, error_reply,
                                   is_int, observation_frames, request_id, window_geometry)
from qvl_vla_flow.transport import DEFAULT_MAX_BYTES, TransportError, pack, unpack

log = logging.getLogger(__name__)

# websocket close codes (RFC 6455)
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
HARD_LIMIT_FACTOR = 4


@dataclass
class _Session:
    id: str
    connection: ServerConnection | None
    last_used: float
    policy: PolicySessionLike | None = None
    busy: bool = False
    newest_step: int = -1  # of the observations since the last reset


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (so no one else can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PolicyServer:
    """Serves ``backend`` on ``ws://host:port``; see the module docstring for the protocol.

    Use :meth:`serve_forever` in a process of its own (the CLI), or :meth:`start` / :meth:`stop` (or
    ``with PolicyServer(...) as server:``) to run it on a background thread (tests, benchmarks).
    """

    def __init__(self, backend: PolicyBackend, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 max_sessions: int = 16, idle_timeout_s: float = 300.0, max_message_bytes: int = DEFAULT_MAX_BYTES,
                 hello_timeout_s: float = 10.0) -> None:
        if token is not None and (not isinstance(token, str) or not token):
            raise UserError("the policy server token must be a non-empty string")
        if token is None and not is_loopback(host):
            raise UserError(f"refusing to serve a policy on {host!r} without a token: anyone who can reach it could "
                            "drive it; set a token, or bind to 127.0.0.1")
        if max_sessions < 1:
            raise UserError(f"max_sessions must be at least 1, got {max_sessions}")
        if idle_timeout_s <= 0 or hello_timeout_s <= 0:
            raise UserError("idle_timeout_s and hello_timeout_s must be positive")
        try:  # sent in every ready: fail here, not at the first hello
            pack({"metadata": backend.metadata})
        except TransportError as exc:
            raise ValueError(f"backend.metadata cannot be sent: {exc}") from exc
        self.num_frames, self.frame_skip = window_geometry(backend.metadata)
        self.backend = backend
        # "localhost" may resolve to two addresses, which would get two different free ports for port 0
        self.host = "127.0.0.1" if host == "localhost" else host
        self.max_sessions = max_sessions
        self.idle_timeout_s = float(idle_timeout_s)
        self.hello_timeout_s = float(hello_timeout_s)
        self.max_message_bytes = int(max_message_bytes)
        self._token = token
        self._requested_port = port
        self._port: int | None = None
        self._sessions: dict[str, _Session] = {}
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    # ---- running -------------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the free one picked for ``port=0``); only while serving."""
        if self._port is None:
            raise RuntimeError("the policy server is not running")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    @property
    def session_count(self) -> int:
        """Sessions held now, with or without a connection."""
        return len(self._sessions)

    def serve_forever(self, on_ready: Callable[[str], None] | None = None) -> None:
        """Serves until interrupted (Ctrl-C); ``on_ready(url)`` is called once the port is bound."""
        try:
            asyncio.run(self._main(on_ready))
        except KeyboardInterrupt:
            log.info("policy server interrupted")

    def start(self) -> PolicyServer:
        """Serves on a background thread; returns once the port is bound (raises if it cannot bind)."""
        if self._thread is not None:
            raise RuntimeError("the policy server is already running")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(self._main(lambda url: ready.set()))
            except BaseException as exc:  # reported to start() if it happened before the port was bound
                failure.append(exc)
                if ready.is_set():
                    log.exception("policy server thread failed")
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name="policy-server", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Closes every connection (code 1001), frees every session and joins the background thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stopping.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _main(self, on_ready: Callable[[str], None] | None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy-backend")
        try:
            async with serve(self._handle, self.host, self._requested_port, compression=None,
                             max_size=HARD_LIMIT_FACTOR * self.max_message_bytes,
                             max_queue=2) as server:  # bounds what one peer can make the server buffer
                self._port = server.sockets[0].getsockname()[1]
                reaper = asyncio.create_task(self._reap())
                log.info("policy server listening on %s", self.url)
                if on_ready is not None:
                    on_ready(self.url)
                try:
                    await self._stopping.wait()
                finally:
                    reaper.cancel()
                # leaving the block closes every connection and waits for their handlers
        finally:
            for session in list(self._sessions.values()):
                self._free(session, "server stopped")
            self._executor.shutdown(wait=True)
            self._port = None

    # ---- sessions ------------------------------------------------------------------------------------------------

    def _claim(self, wanted: Any, connection: ServerConnection) -> tuple[_Session, bool] | None:
        """The session for a hello: the named one when it is free to resume, else a new slot (evicting the least
        recently used detached session when full); None when every slot has a live connection. Synchronous, so two
        hellos cannot both take the last slot."""
        now = time.monotonic()
        if isinstance(wanted, str):
            session = self._sessions.get(wanted)
            if session is not None and session.connection is None and session.policy is not None:
                session.connection, session.last_used = connection, now
                return session, True
        if len(self._sessions) >= self.max_sessions:
            detached = [s for s in self._sessions.values() if s.connection is None and not s.busy]
            if not detached:
                return None
            self._free(min(detached, key=lambda s: s.last_used), "evicted for a new session")
        session = _Session(id=secrets.token_hex(8), connection=connection, last_used=now)
        self._sessions[session.id] = session
        return session, False

    def _free(self, session: _Session, why: str) -> None:
        if self._sessions.get(session.id) is not session:
            return
        del self._sessions[session.id]
        log.info("session %s freed (%s)", session.id, why)
        close = getattr(session.policy, "close", None)
        if callable(close) and self._executor is not None:
            # on the worker thread, after any call still running on this session's model
            self._executor.submit(close).add_done_callback(_log_failure)

    async def _reap(self) -> None:
        """Frees sessions idle for longer than ``idle_timeout_s`` (closing their connection if they have one)."""
        interval = min(max(self.idle_timeout_s / 4, 0.01), 1.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if not session.busy and now - session.last_used > self.idle_timeout_s:
                    connection = session.connection
                    self._free(session, "idle timeout")
                    if connection is not None:
                        self._spawn(connection.close(CLOSE_NORMAL, f"session idle for over {self.idle_timeout_s:g} s"))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # a reference, or the task may be garbage-collected mid-way
        task.add_done_callback(self._tasks.discard)

    async def _on_worker(self, session: _Session, function: Callable[..., Any], *args: Any) -> Any:
        session.busy = True
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            session.busy = False
            session.last_used = time.monotonic()

    # ---- connections ---------------------------------------------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        session = await self._hello(connection)
        if session is None:
            return
        clean = True
        try:
            async for data in connection:
                if self._sessions.get(session.id) is not session:
                    break  # idled out: its connection is being closed
                await self._answer(connection, session, data)
        except ConnectionClosedError:
            clean = False
        except ConnectionClosed:
            pass
        finally:
            if self._sessions.get(session.id) is session:
                if clean:
                    self._free(session, "client closed the connection")
                else:
                    # dropped without a close frame: keep it for the client to resume
                    session.connection, session.last_used = None, time.monotonic()
                    log.info("session %s detached (connection lost)", session.id)

    async def _hello(self, connection: ServerConnection) -> _Session | None:
        """Waits for a valid hello and opens (or resumes) its session; None when the connection is refused or
        closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hello_timeout_s
        while True:
            try:
                data = await asyncio.wait_for(connection.recv(), max(deadline - loop.time(), 0.0))
            except asyncio.TimeoutError:
                await self._refuse(connection, f"no hello within {self.hello_timeout_s:g} s", CLOSE_POLICY)
                return None
            except ConnectionClosed:
                return None
            try:
                message = unpack(data, max_bytes=self.max_message_bytes)
            except TransportError as exc:
                await self._send(connection, error_reply(str(exc), None))
                continue
            request = request_id(message)
            if message.get("type") != "hello":
                await self._send(connection, error_reply(f"the first message must be a hello, got type "
                                                         f"{message.get('type')!r}", request))
                continue
            if self._token is not None:
                given = message.get("token")
                if not isinstance(given, str) or not hmac.compare_digest(given.encode(), self._token.encode()):
                    await self._refuse(connection, "wrong or missing token", CLOSE_POLICY)
                    return None
            claimed = self._claim(message.get("session"), connection)
            if claimed is None:
                await self._refuse(connection, f"server full: all {self.max_sessions} sessions have a connection; "
                                               "try again later", CLOSE_TRY_AGAIN)
                return None
            session, resumed = claimed
            if not resumed:
                try:
                    session.policy = await self._on_worker(session, self.backend.open_session)
                except Exception as exc:
                    log.exception("backend failed to open a session")
                    self._free(session, "backend failed to open it")
                    await self._send(connection, error_reply(f"backend failed to open a session: {_describe(exc)}",
                                                             request))
                    continue
            log.info("session %s %s (%d held)", session.id, "resumed" if resumed else "opened", len(self._sessions))
            try:
                await connection.send(pack({
                    "type": "ready", "session": session.id, "resumed": resumed,
                    "chunk_size": int(self.backend.chunk_size), "action_dim": int(self.backend.action_dim),
                    "metadata": self.backend.metadata,
                }))
            except ConnectionClosed:
                session.connection, session.last_used = None, time.monotonic()
                return None
            return session

    async def _answer(self, connection: ServerConnection, session: _Session, data: str | bytes) -> None:
        started = time.perf_counter()
        session.last_used = time.monotonic()
        request: int | None = None
        try:
            message = unpack(data, max_bytes=self.max_message_bytes)
            request = request_id(message)
            kind = message.get("type")
            if kind == "observe":
                reply = await self._observe(session, message, request, started)
            elif kind == "reset":
                session.newest_step = -1
                await self._on_worker(session, session.policy.reset)
                reply = {"type": "reset_done"} if request is None else {"type": "reset_done", "request": request}
            elif kind == "hello":
                raise RejectedMessage("this connection already has a session (one hello per connection)")
            else:
                raise RejectedMessage(f"unknown message type {kind!r} (expected observe or reset)")
        except (TransportError, RejectedMessage) as exc:
            reply = error_reply(str(exc), request)
        except Exception as exc:
            log.exception("backend failed on session %s", session.id)
            reply = error_reply(f"backend failed: {_describe(exc)}", request)
        await connection.send(pack(reply))

    async def _observe(self, session: _Session, message: dict[str, Any], request: int | None,
                       started: float) -> dict[str, Any]:
        if request is None:
            raise RejectedMessage("an observe needs an int 'request' id")
        step, state = message.get("step"), message.get("state")
        if not is_int(step) or step < 0:
            raise RejectedMessage(f"an observe needs an int 'step' >= 0, got {step!r}")
        if step < session.newest_step:
            raise RejectedMessage(f"step {step} is before step {session.newest_step}, already observed in this "
                                  "session; steps must not decrease within an episode (send a reset to start a new "
                                  "one)")
        frames = observation_frames(message.get("frames"), step, self.num_frames, self.frame_skip)
        action_dim = int(self.backend.action_dim)
        if (not isinstance(state, np.ndarray) or state.dtype not in (np.float32, np.float64)
                or state.shape != (action_dim,)):
            raise RejectedMessage(f"'state' must be a float32 array [{action_dim}], got {describe_value(state)}")
        session.newest_step = step
        actions = await self._on_worker(session, session.policy.act, frames, state.astype(np.float32, copy=False),
                                        step)
        actions = np.asarray(actions, dtype=np.float32)
        expected = (int(self.backend.chunk_size), action_dim)
        if actions.shape != expected:
            raise RuntimeError(f"returned actions of shape {list(actions.shape)}, expected {list(expected)}")
        return {"type": "chunk", "request": request, "step": step, "actions": actions,
                "server_ms": (time.perf_counter() - started) * 1000.0}

    async def _refuse(self, connection: ServerConnection, message: str, code: int) -> None:
        await self._send(connection, error_reply(message, None))
        try:
            await connection.close(code, message[:120])  # a close reason is at most 123 bytes
        except ConnectionClosed:
            pass

    @staticmethod
    async def _send(connection: ServerConnection, message: dict[str, Any]) -> None:
        try:
            await connection.send(pack(message))
        except ConnectionClosed:
            pass


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _log_failure(future: Any) -> None:
    if future.exception() is not None:
        log.error("closing a backend session failed: %s", _describe(future.exception()))
