"""The ``[task]`` settings of the vla_flow task.

Names follow the seed where it had them (``num_frames``, ``frame_skip``, ``chunk_size``,
``sampling_steps``, the expert's ``num_layers / hidden_dim / num_heads / mlp_ratio``).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from qvl.config import fraction, model_image_size, non_negative, positive
from qvl_vla_flow.actions import DEFAULT_KEYS, ActionSpace


def _keys(instance: Any, attribute: attrs.Attribute, value: list[str]) -> None:
    ActionSpace(tuple(value))  # raises with the unknown names


@attrs.define
class RecordSettings:
    """``qvl run vla_flow record``: a scripted expert in Miniworld, written in the capture format."""

    env: str = "MiniWorld-OneRoomS6-v0"
    # the instruction written with each episode; empty: the env's own goal sentence
    instruction: str = ""
    episodes: int = attrs.field(default=60, validator=positive)
    seed: int = 0  # episode i is reset with seed + i
    fps: float = attrs.field(default=10.0, validator=positive)
    canvas: int = attrs.field(default=384, validator=positive)  # square canvas, pixels
    max_steps: int = attrs.field(default=120, validator=positive)
    qpc_freq: int = attrs.field(default=10_000_000, validator=positive)  # Windows' usual QPC rate
    offset_ms: float = 12.5  # the input hook's clock against the frame grabber's
    # share of frames the grabber writes twice (same timestamp), as a stalled screen capture does
    duplicate_rate: float = attrs.field(default=0.03, validator=fraction)


@attrs.define
class VlaFlowConfig:
    # folder of recorded episodes (video.mp4, events.jsonl, frame_ts.bin, meta.json each); empty:
    # the recordings that `qvl run vla_flow record` writes into qvl's cache
    recordings_dir: str = ""
    # the converted data set (Hugging Face datasets, one row per frame); empty: qvl's cache, keyed
    # by the recordings and the conversion settings
    data_dir: str = ""
    keys: list[str] = attrs.field(factory=lambda: list(DEFAULT_KEYS), validator=_keys)
    duplicate_frames: Literal["drop", "keep"] = "drop"
    val_fraction: float = attrs.field(default=0.1, validator=fraction)  # of episodes
    test_fraction: float = attrs.field(default=0.2, validator=fraction)
    record: RecordSettings = attrs.field(factory=RecordSettings)

    # observation: frames t, t - frame_skip, ... (num_frames of them), the first frame repeated
    # before the episode starts; each encoded on its own with the instruction
    num_frames: int = attrs.field(default=3, validator=positive)
    frame_skip: int = attrs.field(default=2, validator=positive)
    image_size: list[int] = attrs.field(factory=lambda: [64, 64], validator=model_image_size)
    # "per-frame": each frame through the backbone alone (training reads the feature cache, and
    # inference caches frames it has seen); "joint": the window's frames in one conversation
    encoding: Literal["per-frame", "joint"] = "per-frame"
    feature_layer: int | None = None  # None: the middle layer
    feature_pooling: str = "grid:4"  # per frame: "mean" (one token) or "grid:N" (N tokens)
    feature_text: Literal["none", "mean", "last"] = "last"  # the instruction's summary token
    token_pooler: Literal["none", "mean", "learned"] = "none"
    pooler_tokens: int = attrs.field(default=4, validator=positive)
    # proprioception: the action of the previous frame (what a client knows it just did), or none
    state: Literal["previous-action", "none"] = "previous-action"

    # the action expert
    chunk_size: int = attrs.field(default=50, validator=positive)
    num_layers: int = attrs.field(default=4, validator=positive)  # cross + self attention pairs
    hidden_dim: int = attrs.field(default=128, validator=positive)
    num_heads: int = attrs.field(default=4, validator=positive)
    mlp_ratio: float = attrs.field(default=4.0, validator=positive)
    dropout: float = attrs.field(default=0.0, validator=fraction)
    # flow matching: t ~ Beta(alpha, beta) (SmolVLA's 1.5, 1.0), x_t = t*noise + (1-t)*actions
    time_alpha: float = attrs.field(default=1.5, validator=positive)
    time_beta: float = attrs.field(default=1.0, validator=positive)
    # loss weight per action dimension by name (mouse_x, button_left, key_UP, ...); others 1
    loss_weights: dict[str, float] = attrs.field(factory=dict)
    sampler: Literal["euler", "heun"] = "euler"
    sampling_steps: int = attrs.field(default=10, validator=positive)
    # learning rate of the projectors relative to train.lr (the expert's)
    projector_lr_scale: float = attrs.field(default=1.0, validator=positive)
    features_batch_size: int = attrs.field(default=16, validator=positive)
    features_root: str = ""  # empty: qvl's cache
    gpu_4bit: bool = True  # on a GPU, encode with the backbone in 4-bit (bitsandbytes nf4)
    eval_steps: list[int] = attrs.field(factory=lambda: [1, 2, 5, 10, 20])  # sampling-step sweep
    seed_noise: int = attrs.field(default=0, validator=non_negative)  # sampler noise in eval

    @property
    def action_space(self) -> ActionSpace:
        return ActionSpace(tuple(self.keys))
