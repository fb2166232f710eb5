"""The policy-server protocol: the messages a :class:`~qvl_vla_flow.client.PolicyClient` and a
:class:`~qvl_vla_flow.server.PolicyServer` exchange, and the checks both ends make of them.

One connection is one session, every message one msgpack map (numpy arrays as plain maps, no
pickle: :mod:`qvl_vla_flow.transport`). ``C`` = ``backend.chunk_size``, ``A`` =
``backend.action_dim``, ``F`` = ``backend.metadata["num_frames"]``:

====================================================================  ==========================================
client sends                                                          server answers
====================================================================  ==========================================
``{"type": "hello", "token": str|None, "session": str|None}``         ``{"type": "ready", "session": id,
(first message of a connection)                                       "resumed": bool, "chunk_size": C,
                                                                      "action_dim": A, "metadata": {...}}``
``{"type": "reset", "request"?: int}``                                ``{"type": "reset_done", "request"?: int}``
``{"type": "observe", "request": int, "step": int,``                  ``{"type": "chunk", "request": int,
``"frames": [{"step": int, "image": uint8 [H, W, 3]}, ...],``         "step": int, "actions": float32 [C, A],
``"state": float32 [A]}``                                             "server_ms": float}``
anything malformed, oversized, of an unknown type, or a backend       ``{"type": "error", "request": int (when
failure                                                               known), "message": str}``
====================================================================  ==========================================

``chunk.step`` is the observation's step: the timestep the chunk's first action is for.

The policy reads a window of frames: at step ``t`` those of steps
:func:`~qvl_vla_flow.samples.window_steps` ``(t, num_frames, frame_skip)`` (``t - 4, t - 2, t`` for
3 frames 2 steps apart, clamped at 0); ``ready.metadata`` always holds ``num_frames`` and
``frame_skip`` (:func:`window_geometry`). An observation carries only the frames of its window that
this session has not had yet (the newest, of step ``t``, always; a client that asks every few steps
still sends the frames of the steps in between that its windows read): ``frames`` holds 1 to ``F``
entries of distinct steps, each a step of the window of ``step``, one of them ``step`` itself,
images all of one shape (:func:`observation_frames`). The backend session keeps the frames it got
by step (and forgets those no later window reads), so each frame crosses the network, and is
encoded, once. Within a session (until a ``reset``) steps must not decrease: an observation for a
step before the newest one seen is refused. ``server_ms`` is the time from receiving the
observation to having its chunk, waiting for the backend's worker thread included. Replies on one
connection come in the order of the requests.

With a token (:func:`policy_token`) the hello must carry it.

A server answers from a :class:`PolicyBackend`, which opens one :class:`PolicySessionLike` per
session.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from qvl_vla_flow.samples import window_steps


class PolicySessionLike(Protocol):
    """One client's policy state: the frames it has been sent, by step, and their cached features."""

    def reset(self) -> None:
        """Forgets everything seen so far (a new episode)."""

    def act(self, frames: dict[int, np.ndarray], state: np.ndarray, step: int) -> np.ndarray:
        """The action chunk ``float32 [C, A]`` starting at ``step``, from the window of frames ending at ``step``.

        :param frames: step -> uint8 ``[H, W, 3]``: the frames that came with this observation (oldest first,
            ``step`` among them); the rest of the window was sent with earlier ones and is the session's to keep.
        :param state: float32 ``[A]``.
        :param step: the newest frame's step; never below that of an earlier call since the last reset.
        """


class PolicyBackend(Protocol):
    """What :class:`~qvl_vla_flow.server.PolicyServer` serves: a model that opens per-client sessions."""

    chunk_size: int
    action_dim: int
    # plain msgpack-able values, sent in every ``ready``; must hold the window geometry, ints
    # ``num_frames`` >= 1 and ``frame_skip`` >= 1
    metadata: dict[str, Any]

    def open_session(self) -> PolicySessionLike:
        """A fresh session (called on the worker thread)."""


class RejectedMessage(ValueError):
    """A well-formed message the server will not act on (its text is the error reply)."""


def window_geometry(metadata: Any) -> tuple[int, int]:
    """``(num_frames, frame_skip)`` of a backend's (or a ``ready``'s) metadata; ValueError when it has none."""
    values = [metadata.get(key) if isinstance(metadata, dict) else None for key in ("num_frames", "frame_skip")]
    if not all(is_int(value) and value >= 1 for value in values):
        raise ValueError(f"the policy metadata must hold the window geometry, ints num_frames >= 1 and frame_skip "
                         f">= 1; got num_frames={values[0]!r}, frame_skip={values[1]!r}")
    return values[0], values[1]


def observation_frames(entries: Any, step: int, num_frames: int, frame_skip: int) -> dict[int, np.ndarray]:
    """The ``frames`` of an observation at ``step``, checked, as step -> image (oldest first)."""
    if not isinstance(entries, list) or not 1 <= len(entries) <= num_frames:
        got = f"{len(entries)} entries" if isinstance(entries, list) else describe_value(entries)
        raise RejectedMessage(f"'frames' must be a list of 1 to {num_frames} {{step, image}} maps, got {got}")
    window = set(window_steps(step, num_frames, frame_skip))
    frames: dict[int, np.ndarray] = {}
    for entry in entries:
        if not isinstance(entry, dict) or set(entry) != {"step", "image"}:
            keys = sorted(entry) if isinstance(entry, dict) else describe_value(entry)
            raise RejectedMessage(f"each of 'frames' must be a map with exactly the keys step, image; got {keys}")
        frame_step, image = entry["step"], entry["image"]
        if not is_int(frame_step) or frame_step not in window:
            raise RejectedMessage(f"frame step {frame_step!r} is not a step of the window at step {step} "
                                  f"({sorted(window)})")
        if frame_step in frames:
            raise RejectedMessage(f"frame step {frame_step} is given twice")
        if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3
                or image.shape[2] != 3 or image.size == 0):
            raise RejectedMessage(f"the image of frame step {frame_step} must be a uint8 array [H, W, 3], got "
                                  f"{describe_value(image)}")
        if frames and image.shape != next(iter(frames.values())).shape:
            raise RejectedMessage(f"the frames have different shapes ({list(image.shape)} at step {frame_step}, "
                                  f"{list(next(iter(frames.values())).shape)} before)")
        frames[frame_step] = image
    if step not in frames:
        raise RejectedMessage(f"'frames' must include the newest frame, of step {step} (got steps {sorted(frames)})")
    return dict(sorted(frames.items()))


def error_reply(message: str, request: int | None) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "error", "message": message}
    if request is not None:
        reply["request"] = request
    return reply


def request_id(message: dict[str, Any]) -> int | None:
    request = message.get("request")
    return request if is_int(request) else None


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def describe_value(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype.name} array of shape {list(value.shape)}"
    return type(value).__name__


def policy_token(configured: str) -> str | None:
    """The token both ends of a run use: ``configured`` (``task.serve.token``, ``task.rollout.token``),
    else ``$QVL_POLICY_TOKEN``; None (no token) when both are empty."""
    import os

    return configured or os.environ.get("QVL_POLICY_TOKEN") or None
