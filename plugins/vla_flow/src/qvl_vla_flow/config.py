"""The ``[task]`` settings of the vla_flow task.

Names follow the seed where it had them (``num_frames``, ``frame_skip``, ``chunk_size``,
``sampling_steps``, the expert's ``num_layers / hidden_dim / num_heads / mlp_ratio``).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from qvl.config import fraction, model_image_size, non_negative, positive
from qvl_vla_flow.actions import DEFAULT_KEYS, ActionSpace


def _divides_hidden_dim(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    # said when the config is read, not when attention is built at the start of training
    if value > 0 and instance.hidden_dim % value:
        raise ValueError(f"'{attribute.name}' must divide hidden_dim ({instance.hidden_dim}); got {value}")


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
    # share of steps where the expert turns aside at random (and back at the next): recovery data,
    # but a future no policy can foresee; at 0.06 a perfect policy's sampled 50-step chunks already
    # score worse than the constant mean action, so the default expert only acts on what it sees
    wander: float = attrs.field(default=0.0, validator=fraction)


def _policies(instance: Any, attribute: attrs.Attribute, value: list[str]) -> None:
    unknown = [name for name in value if name not in ("model", "random", "expert")]
    if unknown or not value:
        raise ValueError(f"unknown rollout policies {unknown}: expected some of model, random, expert")


@attrs.define
class RolloutSettings:
    """``qvl run vla_flow rollout``: the trained policy acting in Miniworld, against baselines."""

    env: str = ""  # empty: task.record.env
    episodes: int = attrs.field(default=50, validator=positive)
    # env seeds seed .. seed + episodes - 1; refused when they overlap the recorded episodes' seeds
    seed: int = attrs.field(default=1_000_000, validator=non_negative)
    max_steps: int = attrs.field(default=120, validator=positive)  # time limit, steps
    # actions executed from each chunk before the policy is asked again: SmolVLA lost most of its
    # success executing whole chunks; here 1 / 5 / 10 steps reach 94 / 78 / 62 % (docs/results.md)
    execute_steps: int = attrs.field(default=1, validator=positive)
    # the same episodes are played by each: the trained policy, uniform random actions, the scripted expert
    policies: list[str] = attrs.field(factory=lambda: ["model", "random", "expert"], validator=_policies)
    # |mouse_dx| above this turns when no key acts (mouse-look); 0: the mouse does nothing
    mouse_turn: float = attrs.field(default=0.0, validator=non_negative)
    videos: int = attrs.field(default=3, validator=non_negative)  # episodes per policy saved by --save-vis
    # a policy server (ws://host:port of `qvl run vla_flow serve`) to act through instead of this
    # process's model: the client executes its queue continuously and asks ahead
    server: str = ""
    token: str = ""  # the server's token; empty: QVL_POLICY_TOKEN, if set
    # send an observation when the queue is below this fraction g of a chunk: near 1 asks again as
    # soon as the last answer is in (g = 0.5 executes ~25 steps open-loop: 50 % success, not 100 %)
    ask_ahead: float = attrs.field(default=0.98, validator=fraction)
    control_period_s: float = attrs.field(default=0.1, validator=positive)  # the client's step clock
    # the validate hook's rollout during training, on other seeds than the rollout stage's: the
    # best checkpoint by val/success; 0 turns it off (then set train.best_metric = "val/mse")
    validate_episodes: int = attrs.field(default=10, validator=non_negative)


@attrs.define
class ServeSettings:
    """``qvl run vla_flow serve``: the policy server (websockets + msgpack, never pickle)."""

    host: str = "127.0.0.1"  # anything but a loopback address requires a token
    port: int = attrs.field(default=8765, validator=non_negative)
    # shared secret a client sends in its hello; empty: the QVL_POLICY_TOKEN environment variable, if set
    token: str = ""
    max_sessions: int = attrs.field(default=16, validator=positive)
    idle_timeout_s: float = attrs.field(default=300.0, validator=positive)


@attrs.define
class VlaFlowConfig:
    """Flow-matching action expert on frozen Qwen-VL features, trained from Miniworld mouse/keyboard
    recordings (record -> convert -> features -> train)

    The task's settings: the ``[task]`` table of a run's TOML.
    """

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
    rollout: RolloutSettings = attrs.field(factory=RolloutSettings)
    serve: ServeSettings = attrs.field(factory=ServeSettings)

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
    num_heads: int = attrs.field(default=4, validator=[positive, _divides_hidden_dim])
    mlp_ratio: float = attrs.field(default=4.0, validator=positive)
    dropout: float = attrs.field(default=0.0, validator=fraction)
    # flow matching: t ~ Beta(alpha, beta) (SmolVLA's 1.5, 1.0), x_t = t*noise + (1-t)*actions
    time_alpha: float = attrs.field(default=1.5, validator=positive)
    time_beta: float = attrs.field(default=1.0, validator=positive)
    # loss weight per action dimension by name (mouse_x, button_left, key_UP, ...); others 1
    loss_weights: dict[str, float] = attrs.field(factory=dict)
    sampler: Literal["euler", "heun"] = "euler"
    sampling_steps: int = attrs.field(default=10, validator=positive)
    # acting (rollout, serve): torch.compile the whole sampling of a chunk (each chunk length compiles
    # on first use, a minute or two on a 2-core CPU; then ~3x faster for one executed step)
    compile_expert: bool = False
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
