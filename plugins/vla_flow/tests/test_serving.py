"""Policy serving: the wire format, a real server on loopback with fake backends, the client, the action queue
and the asynchronous control loop."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import numpy as np
import pytest
from qvl import UserError
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from qvl_vla_flow.async_actor import AsyncActor
from qvl_vla_flow.chunk_queue import ChunkQueue
from qvl_vla_flow.client import PolicyClient, PolicyServerError
from qvl_vla_flow.samples import window_steps
from qvl_vla_flow.server import PolicyServer
from qvl_vla_flow.transport import TransportError, pack, unpack

CHUNK, DIM = 4, 4
NUM_FRAMES, FRAME_SKIP = 3, 2  # the fake policy's window: steps t - 4, t - 2, t


class FakeSession:
    """Keeps frames by step as the real :class:`~qvl_vla_flow.session.PolicySession` does (the first one of a
    step; those no later window reads forgotten) and fails as it does when a window frame was never sent.

    Chunk rows are ``[tag, image tag, newest + i, window sum]``: ``tag`` is the image tag (pixel [0, 0, 1]) of the
    first frame this session computed a chunk from, so a reply computed on another client's session shows;
    ``newest`` is pixel [0, 0, 0] of the frame of ``step``, ``window sum`` the sum of that pixel over the window's
    frames, so a wrong or missing window frame shows."""

    def __init__(self, backend: FakeBackend) -> None:
        self.backend = backend
        self.reset()

    def reset(self) -> None:
        self.tag: int | None = None
        self.frames: dict[int, np.ndarray] = {}
        self.received: Counter[int] = Counter()  # step -> how many times its frame came
        self.steps: list[int] = []  # the step of every chunk computed
        self.windows: list[list[int]] = []  # the window's pixels of every chunk computed

    def act(self, frames: dict[int, np.ndarray], state: np.ndarray, step: int) -> np.ndarray:
        with self.backend.lock:
            self.backend.active += 1
            self.backend.max_active = max(self.backend.max_active, self.backend.active)
        try:
            if self.backend.delay_s:
                time.sleep(self.backend.delay_s)
            if self.backend.gate is not None:
                self.backend.gate.wait()
            assert list(frames) == sorted(frames) and step in frames
            for frame_step, frame in frames.items():
                self.received[frame_step] += 1
                self.frames.setdefault(frame_step, frame)
            if state[0] < 0:
                raise RuntimeError("boom")
            window = window_steps(step, NUM_FRAMES, FRAME_SKIP)
            missing = [s for s in window if s not in self.frames]
            if missing:
                raise ValueError(f"the window at step {step} needs the frame of step {missing[0]}")
            pixels = [int(self.frames[s][0, 0, 0]) for s in window]
            tag = int(self.frames[step][0, 0, 1])
            if self.tag is None:
                self.tag = tag
            self.steps.append(step)
            self.windows.append(pixels)
            for old in [s for s in self.frames if s < window[0]]:
                del self.frames[old]
            actions = np.zeros((self.backend.chunk_size, self.backend.action_dim), np.float32)
            actions[:, 0], actions[:, 1] = self.tag, tag
            actions[:, 2] = pixels[-1] + np.arange(self.backend.chunk_size)
            actions[:, 3] = sum(pixels)
            return actions
        finally:
            with self.backend.lock:
                self.backend.active -= 1

    def close(self) -> None:
        self.backend.closed += 1


class FakeBackend:
    def __init__(self, chunk_size: int = CHUNK, action_dim: int = DIM, delay_s: float = 0.0) -> None:
        self.chunk_size, self.action_dim, self.delay_s = chunk_size, action_dim, delay_s
        self.metadata = {"name": "fake", "fps": 10.0, "num_frames": NUM_FRAMES, "frame_skip": FRAME_SKIP}
        self.sessions: list[FakeSession] = []
        self.closed = 0
        self.active = self.max_active = 0
        self.gate: threading.Event | None = None  # when set to an Event, every act waits for it
        self.lock = threading.Lock()

    def open_session(self) -> FakeSession:
        self.sessions.append(FakeSession(self))
        return self.sessions[-1]


def image(frame: int = 0, tag: int = 0, size: int = 8) -> np.ndarray:
    out = np.full((size, size, 3), frame, np.uint8)
    out[..., 1] = tag
    return out


def window(step: int) -> list[int]:
    return window_steps(step, NUM_FRAMES, FRAME_SKIP)


def recording(last: int, tag: int = 0, first: int = 0) -> dict[int, np.ndarray]:
    """The frames of steps ``first..last``, the frame of step ``s`` filled with ``s % 256``."""
    return {s: image(s % 256, tag) for s in range(first, last + 1)}


def expected_pixels(step: int) -> list[int]:
    return [s % 256 for s in window(step)]


def observe(request: int, step: int = 0, frame: int | None = None, tag: int = 0, **extra: Any) -> dict[str, Any]:
    """An observe with its whole window: the frame of step ``s`` is filled with ``s % 256`` (that of ``step``
    with ``frame`` when given)."""
    frames = [{"step": s, "image": image(frame if s == step and frame is not None else s % 256, tag)}
              for s in sorted(set(window(step)))]
    return {"type": "observe", "request": request, "step": step, "frames": frames,
            "state": np.zeros(DIM, np.float32), **extra}


def frames(*steps: int, shape: tuple[int, ...] = (8, 8, 3), dtype: Any = np.uint8) -> list[dict[str, Any]]:
    return [{"step": s, "image": np.zeros(shape, dtype)} for s in steps]


@contextmanager
def raw(server: PolicyServer, hello: dict[str, Any] | None = None) -> Iterator[tuple[ClientConnection, dict]]:
    """A bare websocket to ``server`` after a hello (``hello=None``: a plain hello); yields it and the ready."""
    with connect(server.url, compression=None, max_size=None, open_timeout=5) as ws:
        ws.send(pack(hello or {"type": "hello"}))
        yield ws, unpack(ws.recv(timeout=5))


def ask(ws: ClientConnection, message: dict[str, Any] | bytes | str) -> dict[str, Any]:
    ws.send(message if isinstance(message, (bytes, str)) else pack(message))
    return unpack(ws.recv(timeout=5))


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def drop(ws: ClientConnection) -> None:
    """Kills the TCP connection without a close frame (a network failure, a killed client)."""
    ws.socket.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def server(backend: FakeBackend) -> Iterator[PolicyServer]:
    with PolicyServer(backend, max_message_bytes=64 * 1024) as running:
        yield running


# ---- transport -------------------------------------------------------------------------------------------------

def test_transport_round_trips_arrays_and_plain_values() -> None:
    message = {"type": "x", "n": 3, "f": 0.5, "flag": True, "none": None, "blob": b"\x00\x01", "list": [1, "a"],
               "nested": {"a": np.arange(6, dtype=np.int64).reshape(2, 3)}, "scalar": np.float32(1.5),
               "u8": np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "f32": np.linspace(0, 1, 5, dtype=np.float32),
               "f64": np.array([[1e300]]), "b": np.array([True, False]), "empty": np.zeros((0, 3), np.float32),
               "strided": np.arange(10, dtype=np.float32)[::2], "big_endian": np.arange(3, dtype=">f4")}
    back = unpack(pack(message))
    for key in ("u8", "f32", "f64", "b", "empty", "strided"):
        assert back[key].dtype == message[key].dtype and back[key].shape == message[key].shape
        np.testing.assert_array_equal(back[key], message[key])
    np.testing.assert_array_equal(back["nested"]["a"], message["nested"]["a"])
    assert back["big_endian"].dtype == np.float32 and back["big_endian"].tolist() == [0.0, 1.0, 2.0]
    assert back["scalar"] == 1.5 and back["list"] == [1, "a"] and back["blob"] == b"\x00\x01" and back["none"] is None
    back["u8"][0, 0, 0] = 99  # writable, not a view of the message bytes


def array_map(raw: bytes, dtype: str, shape: list) -> bytes:
    return msgpack.packb({"a": {"__ndarray__": raw, "dtype": dtype, "shape": shape}}, use_bin_type=True)


@pytest.mark.parametrize("data, expected", [
    (b"\x80" + b"x" * 200, "over the limit"),
    (msgpack.packb([1, 2]), "map at the top level"),
    (b"\xc1\xff\x00garbage", "not a valid msgpack"),
    (msgpack.packb({"a": 1}) + b"\x01", "not a valid msgpack"),
    (b"", "not a valid msgpack"),
    (msgpack.packb({"a": msgpack.ExtType(5, b"x")}), "extension type 5"),
    (msgpack.packb({"t": msgpack.Timestamp(1)}, datetime=False), "Timestamp"),
    (msgpack.packb({1: "int key"}), "not a valid msgpack"),
    (array_map(b"\x00" * 8, "object", [1]), "dtype 'object'"),
    (array_map(b"\x00" * 8, "<f8", [1]), "dtype '<f8'"),
    (array_map(b"\x00" * 7, "float32", [2]), "needs 8 bytes, got 7"),
    (array_map(b"\x00" * 8, "float32", [-2, -1]), "non-negative"),
    (array_map(b"\x00" * 8, "float32", [2.0]), "non-negative"),
    (array_map(b"\x00\x02", "bool", [2]), "other than 0 and 1"),
    (array_map("text", "uint8", [4]), "must be bytes"),
    (msgpack.packb({"a": {"__ndarray__": b"", "dtype": "uint8", "shape": [0], "extra": 1}}), "exactly the keys"),
])
def test_transport_rejects(data: bytes, expected: str) -> None:
    with pytest.raises(TransportError, match=expected):
        unpack(data, max_bytes=128)


def test_transport_refuses_to_encode_other_objects() -> None:
    with pytest.raises(TransportError, match="dtype object"):
        pack({"a": np.array([object()])})
    with pytest.raises(TransportError, match="type set"):
        pack({"a": {1, 2}})
    with pytest.raises(TransportError, match="must be a dict"):
        pack([1])  # type: ignore[arg-type]
    with pytest.raises(TransportError, match="binary"):
        unpack("text")  # type: ignore[arg-type]


# ---- server protocol -------------------------------------------------------------------------------------------

def test_chunk_round_trip(server: PolicyServer) -> None:
    with raw(server, {"type": "hello", "token": None, "session": None}) as (ws, ready):
        assert ready["type"] == "ready" and ready["resumed"] is False
        assert (ready["chunk_size"], ready["action_dim"]) == (CHUNK, DIM)
        assert ready["metadata"] == {"name": "fake", "fps": 10.0, "num_frames": 3, "frame_skip": 2}
        reply = ask(ws, observe(request=41, step=17, frame=5, tag=3))  # frames of steps 13, 15, 17
    assert reply["type"] == "chunk" and reply["request"] == 41 and reply["step"] == 17
    assert reply["actions"].dtype == np.float32 and reply["actions"].shape == (CHUNK, DIM)
    assert reply["actions"][:, 2].tolist() == [5, 6, 7, 8] and reply["actions"][:, 0].tolist() == [3] * CHUNK
    assert reply["actions"][:, 3].tolist() == [13 + 15 + 5] * CHUNK
    assert isinstance(reply["server_ms"], float) and reply["server_ms"] >= 0

    with PolicyClient(server.url) as client:
        assert (client.chunk_size, client.action_dim, client.metadata["name"]) == (CHUNK, DIM, "fake")
        assert (client.num_frames, client.frame_skip, client.window_steps(30)) == (3, 2, [26, 28, 30])
        start, actions = client.infer(recording(30), np.zeros(DIM), step=30)  # picks the window's frames
        assert client.frames_sent == 3
    assert start == 30 and actions.shape == (CHUNK, DIM) and actions[:, 2].tolist() == [30, 31, 32, 33]
    assert actions[0, 3] == 26 + 28 + 30


@pytest.mark.parametrize("bad, request_id, expected", [
    (observe(request=7, frames=[{"step": 0, "image": None}]), 7, "must be a uint8 array [H, W, 3], got NoneType"),
    (observe(request=7, frames=frames(0, dtype=np.float32)), 7, "must be a uint8 array [H, W, 3], got float32"),
    (observe(request=7, frames=frames(0, shape=(8, 8, 4))), 7, "must be a uint8 array"),
    (observe(request=7, state=np.zeros(DIM + 1, np.float32)), 7, "'state' must be a float32 array"),
    (observe(request=7, step=-1, frames=frames(0)), 7, "'step' >= 0"),
    (observe(request=7, step=4, frames=frames(0, 2)), 7, "must include the newest frame, of step 4"),
    (observe(request=7, step=4, frames=frames(2, 4, 6)), 7, "frame step 6 is not a step of the window"),
    (observe(request=7, step=0, frames=frames(-2, 0)), 7, "frame step -2 is not a step of the window"),
    (observe(request=7, step=4, frames=frames(3, 4)), 7, "frame step 3 is not a step of the window at step 4"),
    (observe(request=7, step=4, frames=frames(4, 4)), 7, "frame step 4 is given twice"),
    (observe(request=7, step=8, frames=frames(2, 4, 6, 8)), 7, "1 to 3 {step, image} maps, got 4 entries"),
    (observe(request=7, frames=[]), 7, "1 to 3 {step, image} maps, got 0 entries"),
    (observe(request=7, frames=np.zeros((8, 8, 3), np.uint8)), 7, "got uint8 array of shape [8, 8, 3]"),
    (observe(request=7, frames=None), 7, "got NoneType"),
    (observe(request=7, frames=[{"step": 0}]), 7, "exactly the keys step, image; got ['step']"),
    (observe(request=7, frames=[{"step": "0", "image": image()}]), 7, "frame step '0' is not"),
    (observe(request=7, frames=[{"step": True, "image": image()}]), 7, "frame step True is not"),
    (observe(request=7, step=2, frames=frames(0) + frames(2, shape=(4, 4, 3))), 7, "different shapes"),
    ({"type": "observe", "step": 0}, None, "'request' id"),
    (b"\xc1\xff\x00garbage", None, "not a valid msgpack"),
    (b"\xc1" * (100 * 1024), None, "over the limit of 65536 bytes"),
    (pack(observe(request=8, frames=frames(0, shape=(200, 200, 3)))), None, "over the limit"),
    ("a text frame", None, "expected a binary message"),
    ({"type": "teleport", "request": 9}, 9, "unknown message type 'teleport'"),
    ({"request": 9}, 9, "unknown message type None"),
    ({"type": "hello"}, None, "already has a session"),
    (observe(request=11, state=np.full(DIM, -1.0, np.float32)), 11, "backend failed: RuntimeError: boom"),
])
def test_bad_requests_get_an_error_and_the_connection_keeps_serving(server: PolicyServer, bad: Any,
                                                                    request_id: int | None, expected: str) -> None:
    with raw(server) as (ws, _):
        error = ask(ws, bad)
        assert error["type"] == "error" and expected in error["message"]
        assert error.get("request") == request_id
        reply = ask(ws, observe(request=12, step=3, frame=1))
        assert reply["type"] == "chunk" and reply["request"] == 12 and reply["step"] == 3
        assert reply["actions"][0, 2:].tolist() == [1, 0 + 1 + 1]
    assert server.session_count == 0 or wait_until(lambda: server.session_count == 0)


def test_steps_must_not_decrease_until_a_reset(server: PolicyServer, backend: FakeBackend) -> None:
    with raw(server) as (ws, _):
        assert ask(ws, observe(request=1, step=6))["type"] == "chunk"
        error = ask(ws, observe(request=2, step=5))
        assert error["type"] == "error" and error["request"] == 2 and "before step 6" in error["message"]
        assert ask(ws, observe(request=3, step=6))["type"] == "chunk"  # the same step again is fine
        assert ask(ws, {"type": "reset", "request": 4})["type"] == "reset_done"
        assert ask(ws, observe(request=5, step=0))["actions"][0, 3] == 0
    assert backend.sessions[0].steps == [0]  # since the reset


def test_backend_metadata_must_give_the_window() -> None:
    backend = FakeBackend()
    for metadata in ({"name": "x"}, {"num_frames": 3}, {"num_frames": 0, "frame_skip": 2},
                     {"num_frames": 3, "frame_skip": 2.0}, {"num_frames": True, "frame_skip": 1}):
        backend.metadata = metadata
        with pytest.raises(ValueError, match="window geometry"):
            PolicyServer(backend)


def test_messages_before_hello_get_an_error(server: PolicyServer) -> None:
    with connect(server.url, compression=None) as ws:
        assert "first message must be a hello" in ask(ws, observe(request=1))["message"]
        assert "not a valid msgpack" in ask(ws, b"\xc1")["message"]
        assert ask(ws, {"type": "hello"})["type"] == "ready"
        assert ask(ws, {"type": "reset", "request": 5}) == {"type": "reset_done", "request": 5}


def test_backend_calls_run_one_at_a_time_and_a_backend_error_does_not_stop_the_server() -> None:
    backend = FakeBackend(delay_s=0.01)
    with PolicyServer(backend) as server:
        def hammer(tag: int) -> None:
            with PolicyClient(server.url) as client:
                for i in range(5):  # one frame at a time: each window's older frames went with earlier steps
                    client.infer(image(i, tag), np.zeros(DIM), i)
                with pytest.raises(PolicyServerError, match="boom"):
                    client.infer(image(5, tag), np.full(DIM, -1.0), 5)
                client.infer(image(6, tag), np.zeros(DIM), 6)

        threads = [threading.Thread(target=hammer, args=(tag,)) for tag in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert backend.max_active == 1
    assert [session.steps for session in backend.sessions] == [[0, 1, 2, 3, 4, 6]] * 3
    assert all(session.windows[-1] == expected_pixels(6) for session in backend.sessions)


# ---- authentication --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org", ""])
def test_non_loopback_host_needs_a_token(backend: FakeBackend, host: str) -> None:
    with pytest.raises(UserError, match="without a token"):
        PolicyServer(backend, host=host)
    PolicyServer(backend, host=host, token="s3cret")  # constructing binds nothing


def test_loopback_hosts_and_bad_tokens(backend: FakeBackend) -> None:
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        PolicyServer(backend, host=host)
    with pytest.raises(UserError, match="non-empty"):
        PolicyServer(backend, token="")


def test_wrong_token_is_refused(backend: FakeBackend) -> None:
    with PolicyServer(backend, token="s3cret") as server:
        for token in ("wrong", None):
            with raw(server, {"type": "hello", "token": token}) as (ws, reply):
                assert reply["type"] == "error" and "token" in reply["message"]
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=5)
                assert closed.value.rcvd.code == 1008  # policy violation (ws.close_code needs websockets 14)
            with pytest.raises(PolicyServerError, match="wrong or missing token"):
                PolicyClient(server.url, token=token).connect()
        assert server.session_count == 0 and backend.sessions == []
        with PolicyClient(server.url, token="s3cret") as client:
            assert client.infer(image(2), np.zeros(DIM), 0)[1][0, 2] == 2


# ---- sessions --------------------------------------------------------------------------------------------------

def test_client_close_frees_its_session(server: PolicyServer, backend: FakeBackend) -> None:
    client = PolicyClient(server.url).connect()
    client.infer(image(1), np.zeros(DIM), 0)
    assert server.session_count == 1
    client.close()
    assert wait_until(lambda: server.session_count == 0 and backend.closed == 1)


def test_session_limit_refuses_when_every_session_is_live(backend: FakeBackend) -> None:
    with PolicyServer(backend, max_sessions=2) as server:
        first, second = PolicyClient(server.url).connect(), PolicyClient(server.url).connect()
        with pytest.raises(PolicyServerError, match="server full"):
            PolicyClient(server.url, max_retries=0).connect()
        first.close()
        assert wait_until(lambda: server.session_count == 1)
        third = PolicyClient(server.url).connect()
        assert third.infer(image(4), np.zeros(DIM), 0)[1][0, 2] == 4 and server.session_count == 2
        second.close()
        third.close()


def test_dropped_connection_can_resume_until_evicted(backend: FakeBackend) -> None:
    with PolicyServer(backend, max_sessions=2) as server:
        with raw(server) as (ws, ready):
            ask(ws, observe(request=1, frame=1, tag=7))
            drop(ws)
        session = ready["session"]
        assert server.session_count == 1  # detached, kept for a resume
        with raw(server, {"type": "hello", "session": session}) as (ws, again):
            assert again["session"] == session and again["resumed"] is True
            # same backend session, and its frames: step 1's window reads step 0's frame (pixel 1)
            reply = ask(ws, observe(request=2, step=1, frames=[{"step": 1, "image": image(2, tag=8)}]))
            assert reply["actions"][0].tolist() == [7, 8, 2, 1 + 1 + 2]
            drop(ws)
        assert len(backend.sessions) == 1 and backend.sessions[0].steps == [0, 1]
        live = PolicyClient(server.url).connect()  # the second slot
        newest = PolicyClient(server.url).connect()  # evicts the detached session (least recently used)
        assert wait_until(lambda: backend.closed == 1) and server.session_count == 2
        newest.close()
        assert wait_until(lambda: server.session_count == 1)
        with raw(server, {"type": "hello", "session": session}) as (ws, fresh):
            assert fresh["resumed"] is False and fresh["session"] != session
        live.close()


def test_idle_timeout_frees_sessions(backend: FakeBackend) -> None:
    with PolicyServer(backend, idle_timeout_s=0.3) as server:
        client = PolicyClient(server.url, backoff_s=0.01).connect()
        with raw(server) as (ws, _):
            drop(ws)
        assert server.session_count == 2
        assert wait_until(lambda: server.session_count == 0 and backend.closed == 2)
        # the client's connection was closed with its session: it reconnects to a fresh one
        start, actions = client.infer(recording(5), np.zeros(DIM), 5)
        assert (start, actions[0, 2], client.reconnects, client.resumed) == (5, 5, 1, False)
        client.close()


def test_concurrent_clients_get_their_own_replies() -> None:
    backend = FakeBackend(chunk_size=8)
    clients, requests = 8, 25
    failures: list[str] = []
    received = [0] * clients
    with PolicyServer(backend) as server:
        barrier = threading.Barrier(clients)

        def run(tag: int) -> None:
            try:
                with PolicyClient(server.url) as client:
                    barrier.wait(10)
                    for i in range(requests):
                        step = 100 * tag + i
                        given = {s: image(s % 256, tag) for s in window(step)}
                        start, actions = client.infer(given, np.zeros(DIM), step=step)
                        if start != step or actions[:, :2].tolist() != [[tag, tag]] * 8 \
                                or actions[:, 2].tolist() != [step % 256 + j for j in range(8)] \
                                or actions[0, 3] != sum(expected_pixels(step)):
                            failures.append(f"client {tag} request {i}: step {start}, {actions[0].tolist()}")
                        received[tag] += 1
            except Exception as exc:  # reported below, with the thread's client
                failures.append(f"client {tag}: {exc!r}")

        threads = [threading.Thread(target=run, args=(tag,)) for tag in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert wait_until(lambda: server.session_count == 0)
    assert failures == [] and received == [requests] * clients
    assert sorted(len(session.steps) for session in backend.sessions) == [requests] * clients
    assert all(set(session.received.values()) == {1} for session in backend.sessions)


def restart_later(port: int, backend: FakeBackend, delay_s: float, holder: list[PolicyServer]) -> threading.Thread:
    def restart() -> None:
        time.sleep(delay_s)
        holder.append(PolicyServer(backend, port=port).start())

    thread = threading.Thread(target=restart)
    thread.start()
    return thread


def test_each_frame_reaches_the_server_once_per_session(server: PolicyServer, backend: FakeBackend) -> None:
    """Requests whose windows overlap, some steps apart: every frame crosses once, each chunk saw its window."""
    steps = [0, 1, 2, 3, 6, 9, 10, 11, 15, 22, 30, 31]
    given = recording(31)
    sent = []
    with PolicyClient(server.url) as client:
        for step in steps:
            before = client.frames_sent
            start, actions = client.infer(given, np.zeros(DIM), step)
            assert start == step and actions[0, 3] == sum(expected_pixels(step))
            sent.append(client.frames_sent - before)
        # a lone frame whose window's older frames were never sent: refused before anything is sent
        with pytest.raises(ValueError, match=r"step 40 needs the frames of steps \[36, 38\]"):
            client.infer(image(40), np.zeros(DIM), 40)
        assert client.infer(image(32), np.zeros(DIM), 32)[1][0, 3] == sum(expected_pixels(32))  # 28, 30 were sent
        session = backend.sessions[0]
        assert sent == [1, 1, 1, 1, 2, 3, 2, 1, 2, 3, 3, 3]
        assert session.steps == steps + [32]
        assert session.windows == [expected_pixels(t) for t in steps + [32]]
        assert set(session.received.values()) == {1}
        assert sorted(session.received) == sorted({s for t in steps + [32] for s in window(t)})
        # a new episode: the server session forgot its frames, so the same steps' window goes again
        client.reset()
        client.infer(recording(32), np.zeros(DIM), 32)
        assert session.received == Counter({28: 1, 30: 1, 32: 1}) and session.windows == [expected_pixels(32)]


def test_a_fresh_session_gets_the_whole_window_again_a_resumed_one_does_not() -> None:
    first, second = FakeBackend(), FakeBackend()
    server = PolicyServer(first).start()
    port, restarted = server.port, []
    client = PolicyClient(server.url, backoff_s=0.05, max_backoff_s=0.2, max_retries=10)
    given = recording(12)
    try:
        for step in (2, 4, 6):
            client.infer(given, np.zeros(DIM), step)
        old_session = client.session_id
        # dropped without a close frame: the server keeps the session, and the client resumes it, frames and all
        drop(client._ws)
        assert wait_until(lambda: server._sessions[old_session].connection is None)
        assert client.infer(given, np.zeros(DIM), 8)[1][0, 3] == 4 + 6 + 8
        assert client.reconnects == 1 and client.resumed is True and client.session_id == old_session
        assert first.sessions[0].received == Counter({0: 1, 2: 1, 4: 1, 6: 1, 8: 1})
        # restarted: a fresh session, which gets the whole window with the next observation
        server.stop()
        restart_later(port, second, 0.3, restarted).join()
        start, actions = client.infer(given, np.zeros(DIM), 10)
        assert (start, actions[0, 2], actions[0, 3]) == (10, 10, 6 + 8 + 10)
        assert client.reconnects == 2 and client.resumed is False and client.session_id != old_session
        assert second.sessions[0].received == Counter({6: 1, 8: 1, 10: 1})
        client.infer(given, np.zeros(DIM), 12)
        assert second.sessions[0].received == Counter({6: 1, 8: 1, 10: 1, 12: 1})
        assert second.sessions[0].windows == [expected_pixels(10), expected_pixels(12)]
    finally:
        client.close()
        for running in restarted:
            running.stop()
        server.stop()


def test_client_gives_up_after_its_retries() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    client = PolicyClient(f"ws://127.0.0.1:{port}", max_retries=2, backoff_s=0.01)
    with pytest.raises(ConnectionError, match="after 3 attempts"):
        client.infer(image(), np.zeros(DIM), 0)


# ---- the action queue ------------------------------------------------------------------------------------------

def column(values: list[float]) -> np.ndarray:
    return np.asarray(values, np.float32)[:, None]


def test_queue_asks_below_the_threshold() -> None:
    queue = ChunkQueue(threshold=0.5)
    assert queue.needs_observation(10)
    queue.merge(0, np.zeros((6, 1)), now_step=0)
    assert not queue.needs_observation(10)
    queue.pop(0)
    assert len(queue) == 5 and queue.needs_observation(10)
    sync = ChunkQueue(threshold=0.0)
    sync.merge(0, np.zeros((1, 1)), now_step=0)
    assert not sync.needs_observation(10)
    sync.pop(0)
    assert sync.needs_observation(10)
    with pytest.raises(ValueError):
        ChunkQueue(threshold=1.5)


def test_queue_skips_observations_like_the_last_one_sent() -> None:
    queue = ChunkQueue(similarity=1.0)
    first = np.full((4, 4, 3), 100, np.uint8)
    assert queue.should_send(first)
    queue.mark_sent(first)
    assert queue.should_send(first)  # the queue is empty: always sent
    queue.merge(0, np.zeros((4, 1)), now_step=0)
    assert not queue.should_send(first)
    nearly = first.copy()
    nearly[:2] = 101  # mean difference 0.5
    assert not queue.should_send(nearly)
    assert queue.should_send(np.full((4, 4, 3), 99, np.uint8))  # mean difference 1.0
    assert queue.should_send(np.zeros((4, 4, 3), np.uint8))
    assert queue.should_send(np.zeros((2, 2, 3), np.uint8))  # another size
    queue.reset()
    assert len(queue) == 0 and queue.should_send(first)


def test_queue_blends_the_overlap_with_a_linear_ramp() -> None:
    queue = ChunkQueue(blend="ramp")
    assert queue.merge(0, column([0, 0, 0, 0, 0, 0]), now_step=0) == 6
    assert queue.pop(0)[0] == 0 and queue.pop(1)[0] == 0
    # computed from the observation at step 1, arriving at step 2: its step 1 is stale
    assert queue.merge(1, column([10, 1, 1, 1, 1, 1]), now_step=2) == 5
    got = [queue.pop(t)[0] for t in range(2, 7)]
    np.testing.assert_allclose(got, [0.2, 0.4, 0.6, 0.8, 1.0], rtol=1e-6)
    assert queue.pop(7) is None and len(queue) == 0


def test_queue_default_blend_favours_the_newest_chunk() -> None:
    queue = ChunkQueue()  # LeRobot's weighted_average: 0.3 old + 0.7 new
    queue.merge(0, column([1, 1, 1, 1]), now_step=0)
    queue.merge(1, column([-1, -1, -1, -1]), now_step=1)
    np.testing.assert_allclose([queue.pop(t)[0] for t in range(1, 5)], [-0.4, -0.4, -0.4, -1.0], rtol=1e-6)


def test_queue_constant_blend_and_stale_chunks() -> None:
    queue = ChunkQueue(blend=0.75)
    queue.merge(0, column([4, 4, 4]), now_step=0)
    assert queue.merge(1, column([0, 0, 0]), now_step=1) == 3
    np.testing.assert_allclose([queue.pop(t)[0] for t in (1, 2, 3)], [1.0, 1.0, 0.0])
    assert queue.merge(0, column([5, 5, 5]), now_step=3) == 0  # entirely in the past: dropped
    assert queue.merge(2, column([5, 5, 5]), now_step=6) == 0
    assert len(queue) == 0
    assert queue.merge(2, column([1, 2, 3, 4]), now_step=4) == 2  # its first two steps are stale
    assert queue.pop(3) is None and [queue.pop(t)[0] for t in (4, 5)] == [3, 4]
    replace = ChunkQueue(blend=1.0)
    replace.merge(0, column([4, 4]), now_step=0)
    replace.merge(0, column([7, 7, 7]), now_step=0)
    assert [replace.pop(t)[0] for t in range(3)] == [7, 7, 7]


# ---- the control loop ------------------------------------------------------------------------------------------

class CountingEnv:
    """Frame ``t`` is filled with ``pixel(t)`` (default ``t % 256``); the fake backend's action ``i`` of a chunk from
    frame ``t`` is then ``t + i`` (column 2): a correctly aligned queue executes action ``t`` at step ``t``, blended
    or not."""

    def __init__(self, on_step: Callable[[int], None] | None = None,
                 pixel: Callable[[int], int] = lambda t: t % 256) -> None:
        self.executed: list[float] = []
        self.on_step = on_step
        self.pixel = pixel

    def observation(self) -> tuple[np.ndarray, np.ndarray]:
        return np.full((8, 8, 3), self.pixel(len(self.executed)), np.uint8), np.zeros(DIM, np.float32)

    def step(self, action: np.ndarray) -> bool:
        self.executed.append(float(action[2]))
        if self.on_step is not None:
            self.on_step(len(self.executed))
        return False


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_actor_executes_aligned_actions(threshold: float) -> None:
    backend = FakeBackend(chunk_size=8, delay_s=0.02)
    env = CountingEnv()
    with PolicyServer(backend) as server, PolicyClient(server.url) as client:
        stats = AsyncActor(client, ChunkQueue(threshold=threshold), control_period_s=0.005).run(env, max_steps=40)
    np.testing.assert_allclose(env.executed, np.arange(40), atol=1e-4)
    assert stats.steps == 40 and stats.ticks == 40 + stats.waiting_ticks and stats.errors == 0
    # the last observation may still be unanswered when the episode ends
    assert stats.observations_sent - 1 <= stats.chunks + stats.stale_chunks <= stats.observations_sent
    assert 0.0 <= stats.wait_fraction < 1.0 and stats.actions_per_s > 0
    assert_windows(backend.sessions[0])
    assert stats.frames_sent == sum(backend.sessions[0].received.values())


def assert_windows(session: FakeSession, pixel: Callable[[int], int] = lambda t: t % 256) -> None:
    """Every chunk was computed from the frames of exactly its window's steps, each frame sent once."""
    assert session.steps
    for step, pixels in zip(session.steps, session.windows):
        assert pixels == [pixel(s) for s in window(step)], f"the chunk at step {step} read the wrong frames"
    assert set(session.received.values()) == {1}


def test_actor_sends_the_window_frames_of_skipped_ticks() -> None:
    """Asking every tick, but the screen changes only every 5 steps: most ticks send nothing, and the windows of the
    ticks that do send still read the frames of the steps in between."""
    backend = FakeBackend(chunk_size=8, delay_s=0.005)
    pixel = lambda t: 10 * (t // 5) + 1  # noqa: E731
    env = CountingEnv(pixel=pixel)
    with PolicyServer(backend) as server, PolicyClient(server.url) as client:
        stats = AsyncActor(client, ChunkQueue(threshold=1.0), control_period_s=0.005).run(env, max_steps=40)
    assert stats.steps == 40 and stats.errors == 0 and stats.observations_skipped > 0
    session = backend.sessions[0]
    assert_windows(session, pixel)
    # some window read a frame of a step that sent no observation of its own
    assert {s for t in session.steps for s in window(t)} - set(session.steps)


def test_actor_rides_out_a_server_restart() -> None:
    first, second = FakeBackend(chunk_size=8), FakeBackend(chunk_size=8)
    server = PolicyServer(first).start()
    port, restarted, threads = server.port, [], []

    def kill_at(executed: int) -> None:
        if executed == 15:
            server.stop()
            threads.append(restart_later(port, second, 0.3, restarted))

    env = CountingEnv(kill_at)
    client = PolicyClient(server.url, backoff_s=0.05, max_backoff_s=0.2, max_retries=20)
    try:
        stats = AsyncActor(client, control_period_s=0.005, give_up_after_s=10).run(env, max_steps=60)
    finally:
        client.close()
        for thread in threads:
            thread.join()
        for running in restarted:
            running.stop()
        server.stop()
    np.testing.assert_allclose(env.executed, np.arange(60), atol=1e-4)
    assert stats.steps == 60 and stats.reconnects == 1 and stats.waiting_ticks > 0
    assert_windows(first.sessions[0])
    assert_windows(second.sessions[0])  # the rest came from the restarted server, whole windows first


def test_actor_gives_up_on_a_server_that_stops_answering() -> None:
    backend = FakeBackend(chunk_size=8)
    gate = threading.Event()

    def hang_at(executed: int) -> None:
        if executed == 4:
            backend.gate = gate  # requests are taken but never answered

    env = CountingEnv(hang_at)
    server = PolicyServer(backend).start()
    client = PolicyClient(server.url, timeout_s=60)  # far longer than the actor waits
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="nothing to execute for 1 s"):
            AsyncActor(client, control_period_s=0.005, give_up_after_s=1.0).run(env, max_steps=60)
        waited = time.monotonic() - started
    finally:
        client.close()
        gate.set()
        server.stop()
    assert 4 <= len(env.executed) <= 8  # what was queued, no more
    assert waited < 10


def test_transport_bounds_nesting_and_array_dimensions() -> None:
    # {"type": "observe", "x": [[[...0...]]]} 900 deep, a few hundred bytes that would exhaust Python's
    # recursion; written by hand, as a hostile client would (msgpack's own packer may refuse to nest it)
    deep = b"\x82" + msgpack.packb("type") + msgpack.packb("observe") + msgpack.packb("x") + b"\x91" * 900 + b"\x00"
    with pytest.raises(TransportError, match="nest deeper"):
        unpack(deep, max_bytes=2**20)
    huge = {"type": "x", "a": {"__ndarray__": b"", "dtype": "uint8", "shape": [0, 2**63]}}
    with pytest.raises(TransportError, match="non-negative ints"):
        unpack(msgpack.packb(huge), max_bytes=2**20)
