"""The trained policy behind the policy server: one :class:`PolicySession` per client session.

``qvl run vla_flow serve`` loads the run's checkpoint and the frozen backbone once; each client
session gets its own feature cache (frames by step, each encoded once) and sampler noise. A
request carries the window's frames the session has not seen yet (the client tracks which), so a
client that sends an observation every few steps still gets chunks from the training window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

import qvl
from qvl_vla_flow.session import FrameEncoder, PolicySession, backbone_encoder

if TYPE_CHECKING:
    from qvl.config import RunConfig

    from qvl_vla_flow.policy import VlaFlowPolicy


class RemoteSession:
    """A client session: the frames it sent, by step, and chunks from the window at its newest step."""

    def __init__(self, session: PolicySession, instruction: str):
        self.session = session
        self.instruction = instruction
        self.session.reset(instruction)

    def reset(self) -> None:
        self.session.reset(self.instruction)

    def act(self, frames: dict[int, np.ndarray], state: np.ndarray, step: int) -> np.ndarray:
        for frame_step in sorted(frames):
            self.session.observe(frames[frame_step], step=frame_step)
        if self.session.step != step:
            raise ValueError(f"the request is for step {step} but the newest frame the session has is of step "
                             f"{self.session.step}")
        return self.session.act(np.asarray(state, dtype=np.float32))


class PolicyBackend:
    """What :class:`~qvl_vla_flow.server.PolicyServer` serves: the run's policy and backbone."""

    def __init__(self, config: RunConfig, policy: VlaFlowPolicy, *, encode: FrameEncoder | None = None,
                 instruction: str = ""):
        self.config = config
        self.policy = policy
        self.encode = encode or backbone_encoder(config)
        self.instruction = instruction
        self.opened = 0
        t = config.task
        self.chunk_size = t.chunk_size
        self.action_dim = t.action_space.dim
        self.metadata: dict[str, Any] = {
            "num_frames": t.num_frames, "frame_skip": t.frame_skip, "action_names": t.action_space.names,
            "image_size": list(t.image_size), "sampler": t.sampler, "sampling_steps": t.sampling_steps,
            "instruction": instruction,
        }

    def open_session(self) -> RemoteSession:
        self.opened += 1  # each session its own sampler noise stream
        session = PolicySession.for_run(self.config, self.policy, encode=self.encode, seed=self.opened)
        return RemoteSession(session, self.instruction)


def serve_stage(config: RunConfig, head: Any, checkpoint: Any) -> None:
    """``qvl run vla_flow serve``: the run's checkpoint behind a websocket policy server, until Ctrl-C."""
    from qvl_vla_flow.protocol import policy_token
    from qvl_vla_flow.rollout import rollout_instruction
    from qvl_vla_flow.server import PolicyServer

    settings = config.task.serve
    backend = PolicyBackend(config, head, instruction=rollout_instruction(config))
    server = PolicyServer(backend, settings.host, settings.port, token=policy_token(settings.token),
                          max_sessions=settings.max_sessions, idle_timeout_s=settings.idle_timeout_s)
    print(f"vla_flow: serving {checkpoint} ({config.task.sampler}/{config.task.sampling_steps}, "
          f"instruction {backend.instruction!r})")
    try:
        server.serve_forever(on_ready=lambda url: print(f"listening on {url} (Ctrl-C stops)", flush=True))
    except OSError as exc:  # the port is taken, the host is not this machine's, ...
        raise qvl.UserError(f"cannot serve on {settings.host}:{settings.port} ({exc}); choose another --port "
                            "or --host") from exc
