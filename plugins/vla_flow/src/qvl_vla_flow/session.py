"""Acting with a trained policy: one episode's frames, each encoded once, and sampled chunks.

A :class:`PolicySession` is what a deployed policy keeps per episode (per client, on a server):
the frames seen so far and the features of the ones a window has needed. The window at step
``t`` is the same as in training (:func:`~qvl_vla_flow.samples.window_steps`: ``t, t - skip, ...``,
the first frame repeated before the episode starts), and each frame goes through the frozen
backbone alone with the instruction, as the training features did, so the policy sees at run time
exactly the inputs it was trained on. A frame is encoded the first time a window needs it and never
again; with ``frame_skip = 2`` and a chunk asked for every ``execute_steps`` steps, frames no
window uses are never encoded at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

import qvl
from qvl_vla_flow.samples import frame_tokens, rest_action, window_steps

if TYPE_CHECKING:
    from qvl.config import RunConfig

    from qvl_vla_flow.policy import VlaFlowPolicy

# frame (H, W, 3 uint8) + instruction -> the frame's feature tokens [N, D] (as training read them)
FrameEncoder = Callable[[np.ndarray, str], np.ndarray]


def backbone_encoder(config: RunConfig) -> FrameEncoder:
    """Encodes one frame with the run's frozen backbone and feature settings (loaded once per process)."""
    from PIL import Image

    from qvl.features import extract

    from qvl_vla_flow.frame_features import extractor

    cache = extractor(config)
    pooling = config.task.feature_pooling

    def encode(frame: np.ndarray, instruction: str) -> np.ndarray:
        item = extract(cache.backbone, [{"images": [Image.fromarray(frame).convert("RGB")], "text": instruction}],
                       cache.spec)[0]
        return frame_tokens(item, pooling)[0]

    return encode


class PolicySession:
    """One episode of acting: :meth:`observe` each new frame, :meth:`act` when a chunk is needed.

    :param policy: the trained policy (eval mode).
    :param encode: a :data:`FrameEncoder` (:func:`backbone_encoder` for the run's backbone).
    :param num_frames, frame_skip: the window, as the policy was trained.
    :param sampler, steps: how chunks are integrated (``euler`` / ``heun``, field evaluations).
    :param use_state: feed the previous action as the state token (``task.state``).
    """

    def __init__(self, policy: VlaFlowPolicy, encode: FrameEncoder, *, num_frames: int, frame_skip: int,
                 rest: np.ndarray, sampler: str = "euler", steps: int = 10, use_state: bool = True,
                 seed: int = 0) -> None:
        self.policy = policy
        self.encode = encode
        self.num_frames = num_frames
        self.frame_skip = frame_skip
        self.rest = np.asarray(rest, dtype=np.float32)
        self.sampler = sampler
        self.steps = steps
        self.use_state = use_state
        self.seed = seed
        self.encoded_frames = 0  # over the session's life: what a cache saves shows here
        self.reset()

    @classmethod
    def for_run(cls, config: RunConfig, policy: VlaFlowPolicy, *, encode: FrameEncoder | None = None,
                seed: int = 0) -> PolicySession:
        t = config.task
        if t.encoding != "per-frame":
            raise qvl.UserError(f"task.encoding = {t.encoding!r}: acting encodes each new frame once, on its own "
                                "(per-frame encoding); a policy trained on jointly encoded windows would see "
                                "features it was not trained on. Train with task.encoding=per-frame to act")
        if t.compile_expert:
            compile_sampler(policy)
        return cls(policy, encode or backbone_encoder(config), num_frames=t.num_frames, frame_skip=t.frame_skip,
                   rest=rest_action(t.action_space), sampler=t.sampler, steps=t.sampling_steps,
                   use_state=t.state != "none", seed=seed)

    def reset(self, instruction: str = "") -> None:
        """A new episode: frames and features of the last one are dropped."""
        self.instruction = instruction
        self.frames: dict[int, np.ndarray] = {}
        self.features: dict[int, np.ndarray] = {}
        self.step = -1  # the newest frame's step
        self.generator = None

    def observe(self, frame: np.ndarray, step: int | None = None) -> int:
        """Add a frame (``[H, W, 3]`` uint8) at ``step`` (default: the one after the newest); returns
        its step. Nothing is encoded until a window needs it. A client that sends only some frames
        (a remote one) names their steps; the window then reads the frames at its steps."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"a frame must be an [H, W, 3] uint8 array; got {frame.shape} {frame.dtype}")
        step = self.step + 1 if step is None else int(step)
        if step < 0:
            raise ValueError(f"a frame's step must be >= 0, got {step}")
        if step in self.frames and not np.array_equal(self.frames[step], frame):
            self.features.pop(step, None)  # a client sent a newer frame of that step: it wins
        self.frames[step] = frame
        self.step = max(self.step, step)
        self._forget_old_frames()
        return step

    def window_steps(self, step: int | None = None) -> list[int]:
        """The steps whose frames the window ending at ``step`` (default the newest) reads."""
        return window_steps(self.step if step is None else step, self.num_frames, self.frame_skip)

    def window(self) -> np.ndarray:
        """Feature tokens of the window ending at the newest frame, ``[num_frames, N, D]``."""
        if self.step < 0:
            raise RuntimeError("observe a frame before asking for the window")
        return np.stack([self._features(s) for s in self.window_steps()])

    def act(self, state: np.ndarray | None = None, length: int | None = None) -> np.ndarray:
        """A chunk ``[C, A]`` of actions from the newest frame's window, clipped to ``[-1, 1]``.

        :param state: the action executed at the previous step (the rest action at the first).
        :param length: sample only the first ``length`` steps (those a caller will execute): the
            same values as the whole chunk's first steps, as the expert is causal, for a fraction
            of the work.
        """
        import torch

        features = torch.from_numpy(self.window()).float()[None]
        state_tensor = None
        if self.use_state:
            previous = self.rest if state is None else np.asarray(state, dtype=np.float32)
            state_tensor = torch.from_numpy(previous).float()[None]
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(self.seed)
        device = next(self.policy.parameters()).device
        chunk = self.policy.sample(features.to(device), None if state_tensor is None else state_tensor.to(device),
                                   steps=self.steps, method=self.sampler, generator=self.generator, length=length)
        return chunk[0].clamp(-1, 1).float().cpu().numpy()

    def _features(self, step: int) -> np.ndarray:
        if step not in self.features:
            if step not in self.frames:
                raise ValueError(f"the window at step {self.step} needs the frame of step {step}, which was not "
                                 f"observed (have {sorted(self.frames)})")
            self.features[step] = np.asarray(self.encode(self.frames[step], self.instruction), dtype=np.float32)
            self.encoded_frames += 1
        return self.features[step]

    def _forget_old_frames(self) -> None:
        # a window reaches back (num_frames - 1) * frame_skip steps: older frames (and their
        # features) are never needed again, so a long episode holds a few frames, not all
        horizon = self.step - (self.num_frames - 1) * self.frame_skip
        for old in [s for s in self.frames if s < horizon]:
            del self.frames[old]
            self.features.pop(old, None)


def compile_sampler(policy: VlaFlowPolicy, backend: str = "inductor") -> None:
    """``torch.compile`` the policy's whole sampling of a chunk (context, cross-attention keys and
    values, every sampler step unrolled) as one graph; once per policy object. Each chunk length and
    sampler setting compiles on first use (about a minute or two on a 2-core CPU)."""
    import torch

    if not getattr(policy, "_sampler_compiled", False):
        policy.integrate_chunk = torch.compile(policy.integrate_chunk, dynamic=False, fullgraph=True, backend=backend)
        policy._sampler_compiled = True
