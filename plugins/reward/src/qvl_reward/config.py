"""The ``[task]`` settings of the reward task."""

from __future__ import annotations

from typing import Literal

import attrs

from qvl.config import even, fraction, model_image_size, not_with, positive

DEFAULT_CAMERAS = ["observation.images.cam_high", "observation.images.cam_left_wrist",
                   "observation.images.cam_right_wrist"]


@attrs.define
class SyntheticConfig:
    """The embedded default data set (``qvl run reward make-data``)."""

    # 192, not 24: the tiny model memorises 24 episodes (train accuracy 0.99, val 0.62 at 2,000
    # steps) and generalises with more of them at the same steps and step cost (96: 0.67, 192: 0.78
    # val accuracy; docs/results.md "Accuracy on the synthetic data"). Writing them takes 6 s, decoding them
    # into the prepared-frame cache once about 70 s (256 MB)
    train_episodes: int = attrs.field(default=192, validator=positive)
    # 384 held-out frames; 8 episodes were a noisy measure (the frames of one episode are alike)
    val_episodes: int = attrs.field(default=16, validator=positive)
    frames: int = attrs.field(default=24, validator=positive)
    # the cameras are H.264 (yuv420p) videos: even sides
    width: int = attrs.field(default=96, validator=[positive, even])
    height: int = attrs.field(default=64, validator=[positive, even])


@attrs.define
class CachedFeaturesConfig:
    """``task.features = "cached"``: what the frozen backbone's feature cache holds and the head on it.

    The defaults read what the end-to-end mode reads (the final layer at the last real token, as
    ``text = "last"``) plus each camera's image tokens pooled to a 2x2 grid, all from the same
    conversation: with frozen weights the last token alone carries too little of the images.
    """

    layer: int | None = -1  # hidden_states index (-1: final norm, None: middle layer)
    pooling: str = "grid:4"  # per camera image: "none" is refused (variable width), "mean" or "grid:N"
    text: Literal["none", "mean", "last"] = "last"
    head_hidden: int = attrs.field(default=256, validator=attrs.validators.ge(0))  # 0: a linear head
    dropout: float = attrs.field(default=0.1, validator=fraction)
    batch_size: int = attrs.field(default=16, validator=positive)  # samples per forward while building
    root: str = ""  # cache folders live in root/<fingerprint hash>; empty: qvl's cache dir /features


@attrs.define
class RewardConfig:
    """Reward bin of a robot frame from several cameras + task text (LeRobot v3.0 / v2.1), last-token
    pooling + linear head; task.features=cached: a head on cached frozen features

    The task's settings: the ``[task]`` table of a run's TOML.
    """

    data_dir: str = ""  # empty: the embedded synthetic LeRobot v3.0 dataset, written on first use
    # a LeRobot data set on the Hugging Face hub, "org/name", instead of data_dir: read through the local
    # HF cache (downloaded there on first use; with HF_HUB_OFFLINE=1 the cache alone)
    repo_id: str = attrs.field(default="", validator=not_with("data_dir"))
    revision: str = ""  # of repo_id: a branch, tag or commit; empty: main
    camera_keys: list[str] = attrs.field(factory=lambda: list(DEFAULT_CAMERAS))
    task_template: str = "Task: {task}"
    label_column: str = "reward_bins"
    num_classes: int | None = attrs.field(default=None, validator=attrs.validators.optional(positive))
    image_size: list[int] = attrs.field(factory=lambda: [96, 64], validator=model_image_size)
    frame_stride: int = attrs.field(default=1, validator=positive)
    splits: dict[str, str] = attrs.field(factory=dict)
    val_fraction: float = attrs.field(default=0.2, validator=fraction)
    padding_side: Literal["left", "right"] = "right"
    class_weights: list[float] = attrs.field(factory=list)
    balance_classes: bool = False
    predict_every: int = attrs.field(default=5, validator=positive)
    predict_episodes: list[int] = attrs.field(factory=list)
    synthetic: SyntheticConfig = attrs.field(factory=SyntheticConfig)
    # "end-to-end": the backbone runs (and trains) every step; "cached": frozen backbone, features
    # computed once into a qvl.features cache and a head trained on them (see qvl_reward.cached)
    features: Literal["end-to-end", "cached"] = "end-to-end"
    cached: CachedFeaturesConfig = attrs.field(factory=CachedFeaturesConfig)
