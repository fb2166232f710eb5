"""A fake policy backend for the vla_flow serving benchmarks that checks every chunk saw exactly its window's frames.

Shared by ``bench_vla_flow_server.py`` and ``bench_vla_flow_async.py`` (imported as a sibling module: running
``python benchmarks/NAME.py`` puts this folder on ``sys.path``). Frames carry their step in their first pixel,
``step % 256`` in channel 0 and ``step // 256`` in channel 2 (``step_frame`` makes one, ``encoded_step`` reads it
back), leaving channel 1 for an optional client tag. Each session keeps the frames it was sent by step, as the real
session does, and every call checks that the window of ``num_frames`` frames ``frame_skip`` steps apart ending at
the request's step is there and holds the frame of each of its steps (failing otherwise), sleeps ``latency_s``
(the model; GPU work releases the GIL the same way) and returns a chunk whose action ``i`` has ``step + i`` in
column 0 and, with ``tag_sessions``, the session's tag (channel 1 of its first frame) in column 1.
"""

import argparse
import time

import numpy as np

from qvl_vla_flow.samples import window_steps


def step_frame(step: int, image_size: int, tag: int = 0) -> np.ndarray:
    """A square uint8 frame encoding ``step`` (channels 0 and 2) and ``tag`` (channel 1) in every pixel."""
    frame = np.zeros((image_size, image_size, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = step % 256, tag, step // 256
    return frame


def encoded_step(frame: np.ndarray) -> int:
    """The step ``step_frame`` encoded in ``frame``."""
    return int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 2])


class Session:
    """One client's frames by step; ``act`` checks the window and answers after ``latency_s``."""

    def __init__(self, backend: "WindowCheckingBackend") -> None:
        self.backend = backend
        self.reset()

    def reset(self) -> None:
        self.tag: int | None = None
        self.frames: dict[int, np.ndarray] = {}

    def act(self, frames: dict[int, np.ndarray], state: np.ndarray, step: int) -> np.ndarray:
        b = self.backend
        for frame_step, frame in frames.items():
            self.frames.setdefault(frame_step, frame)
        window = window_steps(step, b.num_frames, b.frame_skip)
        wrong = [s for s in window if s not in self.frames or encoded_step(self.frames[s]) != s]
        if wrong:
            raise ValueError(f"the window at step {step} lacks the frames of steps {wrong}")
        self.frames = {s: f for s, f in self.frames.items() if s >= window[0]}
        time.sleep(b.latency_s)
        actions = np.zeros((b.chunk_size, b.action_dim), np.float32)
        actions[:, 0] = encoded_step(self.frames[step]) + np.arange(b.chunk_size)  # the request's step, onwards
        if b.tag_sessions:
            if self.tag is None:
                self.tag = int(self.frames[step][0, 0, 1])
            actions[:, 1] = self.tag  # the session's client
        return actions


class WindowCheckingBackend:
    """Stands in for the model behind ``PolicyServer``: opens window-checking ``Session`` objects."""

    def __init__(self, chunk_size: int, action_dim: int, num_frames: int, frame_skip: int, latency_s: float,
                 tag_sessions: bool = False) -> None:
        self.chunk_size, self.action_dim = chunk_size, action_dim
        self.num_frames, self.frame_skip = num_frames, frame_skip
        self.latency_s, self.tag_sessions = latency_s, tag_sessions
        self.metadata = {"name": "fake", "num_frames": num_frames, "frame_skip": frame_skip}

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The backend's settings as options: ``--chunk``, ``--action-dim``, ``--num-frames``, ``--frame-skip``."""
        parser.add_argument("--chunk", type=int, default=50)
        parser.add_argument("--action-dim", type=int, default=14)
        parser.add_argument("--num-frames", type=int, default=3, help="frames in the policy's window")
        parser.add_argument("--frame-skip", type=int, default=2, help="steps between window frames")

    @classmethod
    def from_arguments(cls, args: argparse.Namespace, latency_s: float,
                       tag_sessions: bool = False) -> "WindowCheckingBackend":
        """The backend with the settings ``add_arguments`` declared."""
        return cls(args.chunk, args.action_dim, args.num_frames, args.frame_skip, latency_s, tag_sessions)

    def open_session(self) -> Session:
        return Session(self)
