"""The ``reward`` task: its config, and the qvl hooks that run it (entry point ``qvl.reward``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

import qvl
from qvl.config import fraction, positive

if TYPE_CHECKING:
    from qvl.backbone import Backbone
    from qvl.config import RunConfig

TASK_NAME = "reward"
DEFAULT_CAMERAS = ["observation.images.cam_high", "observation.images.cam_left_wrist",
                   "observation.images.cam_right_wrist"]
LABELS_KEY, FRAMES_KEY = "reward_labels", "reward_frames"


def _image_size(instance: Any, attribute: attrs.Attribute, value: list[int]) -> None:
    if len(value) != 2 or any(v < 32 or v % 32 for v in value):
        raise ValueError(f"'{attribute.name}' must be [width, height], multiples of 32, at least 32; got {value}")


def _optional_positive(instance: Any, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None:
        positive(instance, attribute, value)


@attrs.define
class SyntheticConfig:
    """The embedded default data set (``qvl run reward make-data``)."""

    train_episodes: int = attrs.field(default=24, validator=positive)
    val_episodes: int = attrs.field(default=8, validator=positive)
    frames: int = attrs.field(default=24, validator=positive)
    width: int = attrs.field(default=96, validator=positive)
    height: int = attrs.field(default=64, validator=positive)


@attrs.define
class RewardConfig:
    data_dir: str = ""  # empty: the embedded synthetic LeRobot v3.0 dataset, written on first use
    camera_keys: list[str] = attrs.field(factory=lambda: list(DEFAULT_CAMERAS))
    task_template: str = "Task: {task}"
    label_column: str = "reward_bins"
    num_classes: int | None = attrs.field(default=None, validator=_optional_positive)
    image_size: list[int] = attrs.field(factory=lambda: [96, 64], validator=_image_size)
    frame_stride: int = attrs.field(default=1, validator=positive)
    splits: dict[str, str] = attrs.field(factory=dict)
    val_fraction: float = attrs.field(default=0.2, validator=fraction)
    padding_side: Literal["left", "right"] = "right"
    class_weights: list[float] = attrs.field(factory=list)
    balance_classes: bool = False
    predict_every: int = attrs.field(default=5, validator=positive)
    predict_episodes: list[int] = attrs.field(factory=list)
    synthetic: SyntheticConfig = attrs.field(factory=SyntheticConfig)


def synthetic_spec(config: RunConfig) -> Any:
    from qvl_reward.synthetic import EpisodeSpec

    s = config.task.synthetic
    return EpisodeSpec(train_episodes=s.train_episodes, val_episodes=s.val_episodes, frames=s.frames,
                       width=s.width, height=s.height, seed=config.seed)


def data_root(config: RunConfig, *, create: bool) -> Path:
    if config.task.data_dir:
        return Path(config.task.data_dir).expanduser()
    root = qvl.cache_dir() / "datasets" / synthetic_spec(config).key()
    if create:
        write_synthetic_once(root, config)
    return root


def write_synthetic_once(root: Path, config: RunConfig) -> Path:
    """Write the synthetic data set into ``root`` once (reused while its settings are unchanged).

    Only a folder qvl wrote is ever replaced; a user's non-empty folder is refused untouched.
    """
    from qvl.build import build_directory, read_marker
    from qvl_reward.synthetic import write_synthetic

    spec = synthetic_spec(config)
    fingerprint = {"format": "lerobot-synthetic-reward", **attrs.asdict(spec)}
    if (read_marker(root) or {}).get("fingerprint") != fingerprint:
        print(f"qvl-reward: writing the synthetic LeRobot v3.0 data set into {root}", file=sys.stderr)
    return build_directory(root, lambda out: write_synthetic(out, spec), kind="dataset", fingerprint=fingerprint,
                           hint="choose another task.data_dir", info={"plugin": "qvl-reward"})


def make_data(config: RunConfig) -> Path:
    """Stage ``make-data``: write the synthetic LeRobot v3.0 dataset (into ``task.data_dir`` when set)."""
    spec = synthetic_spec(config)
    root = write_synthetic_once(data_root(config, create=False), config)
    print(f"qvl-reward: {spec.train_episodes} train + {spec.val_episodes} val episodes of {spec.frames} frames, "
          f"3 cameras, LeRobot v3.0: {root}")
    return root


TASK = qvl.Task(
    name=TASK_NAME,
    config_class=RewardConfig,
    description="Reward bin of a robot frame from several cameras + task text (LeRobot v3.0 / v2.1), "
                "last-token pooling + linear head",
    defaults={
        # the head reads hidden states only: the 151,936-row token embedding needs no update, and
        # freezing it makes a CPU step several times faster
        "backbone": {"finetune": "full", "freeze_embeddings": True},
        "train": {"steps": 2000, "batch_size": 8, "lr": 1e-3, "warmup_steps": 20, "log_every": 50,
                  "weight_decay": 0.01, "save_every": 1000},
        "eval": {"batch_size": 16},
        "predict": {"batch_size": 16, "split": "val"},
    },
    stages={"make-data": make_data},
)


@qvl.hookimpl
def register_tasks(register: Any) -> None:
    register(TASK)


def open_source(config: RunConfig, root: Path | None = None) -> Any:
    from qvl_reward.lerobot_format import LeRobotDataset

    return LeRobotDataset(root or data_root(config, create=True), config.task.camera_keys)


def split_frames(config: RunConfig, split: str, *, stride: int | None = None, root: Path | None = None,
                 episodes: list[int] | None = None) -> Any:
    from qvl_reward.frames import RewardFrames, episodes_of_split

    source = open_source(config, root)
    if episodes is None:
        episodes = episodes_of_split(source, split, config.task.val_fraction, config.task.splits)
    return RewardFrames(source, episodes, config.task.label_column, config.task.task_template,
                        stride=stride or config.task.frame_stride)


def num_classes(config: RunConfig) -> int:
    """``task.num_classes``, else the length of the label vectors (info.json, else the first row)."""
    if config.task.num_classes is not None:
        return config.task.num_classes
    source = open_source(config)
    feature = source.features.get(config.task.label_column)
    if feature is not None and feature.get("shape") and int(feature["shape"][0]) > 1:
        return int(feature["shape"][0])
    frames = split_frames(config, "train", stride=10**9)
    if frames.label_width is None:
        raise qvl.UserError(f"task.label_column {config.task.label_column!r} holds scalars, which all map to class 0; "
                         "set task.num_classes (and use a vector label column for real classes)")
    return frames.label_width


@qvl.hookimpl
def build_dataset(task: qvl.Task, config: RunConfig, split: str) -> Any:
    if task.name != TASK_NAME:
        return None
    if split != "predict":
        return split_frames(config, split)
    root = Path(config.predict.input).expanduser() if config.predict.input else None
    source = open_source(config, root)
    from qvl_reward.frames import RewardFrames, episodes_of_split

    episodes = config.task.predict_episodes or episodes_of_split(source, config.predict.split,
                                                                 config.task.val_fraction, config.task.splits)
    has_labels = config.task.label_column in source.features
    return RewardFrames(source, episodes, config.task.label_column, config.task.task_template,
                        stride=config.task.predict_every, with_labels=has_labels)


@qvl.hookimpl
def build_collator(task: qvl.Task, config: RunConfig, backbone: Backbone, stage: str) -> Any:
    if task.name != TASK_NAME:
        return None
    from qvl_reward.collate import RewardCollator

    return RewardCollator(config.task, backbone.processor, with_labels=stage == "train")


@qvl.hookimpl
def build_head(task: qvl.Task, config: RunConfig, backbone: Backbone) -> Any:
    if task.name != TASK_NAME:
        return None
    from qvl_reward.head import RewardHead

    return RewardHead(backbone.hidden_size, num_classes(config), dtype=backbone.dtype)


_weights: dict[tuple, list[float] | None] = {}


def class_weights(config: RunConfig, classes: int) -> list[float] | None:
    """``task.class_weights``, or inverse class frequencies of the train split (computed once)."""
    key = (str(data_root(config, create=False)), config.task.label_column, classes,
           tuple(config.task.class_weights), config.task.balance_classes)
    if key not in _weights:
        _weights[key] = _class_weights(config, classes)
    return _weights[key]


def _class_weights(config: RunConfig, classes: int) -> list[float] | None:
    if config.task.class_weights:
        if len(config.task.class_weights) != classes:
            raise qvl.UserError(f"task.class_weights has {len(config.task.class_weights)} values for {classes} classes")
        return list(config.task.class_weights)
    if not config.task.balance_classes:
        return None
    labels = split_frames(config, "train").labels
    counts = [max(1, labels.count(c)) for c in range(classes)]
    return [len(labels) / (classes * n) for n in counts]


@qvl.hookimpl
def loss(task: qvl.Task, config: RunConfig, backbone: Backbone, head: Any, batch: dict[str, Any]) -> Any:
    if task.name != TASK_NAME:
        return None
    import torch
    import torch.nn.functional as F

    from qvl_reward.head import pooled_states

    inputs = {k: v for k, v in batch.items() if k not in (LABELS_KEY, FRAMES_KEY)}
    logits = head(pooled_states(backbone.model, inputs)).float()
    labels = batch[LABELS_KEY]
    weights = class_weights(config, logits.shape[-1])
    weight = torch.tensor(weights, device=logits.device) if weights else None
    value = F.cross_entropy(logits, labels, weight=weight)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean()
    return {"loss": value, "accuracy": accuracy.detach()}


@qvl.hookimpl
def decode(task: qvl.Task, backbone: Backbone, head: Any, batch: dict[str, Any]) -> list[dict] | None:
    if task.name != TASK_NAME:
        return None
    from qvl_reward.head import pooled_states

    inputs = {k: v for k, v in batch.items() if k not in (LABELS_KEY, FRAMES_KEY)}
    probabilities = head(pooled_states(backbone.model, inputs)).float().softmax(dim=-1)
    return [{"episode": episode, "frame": frame, "timestamp": timestamp, "class": int(p.argmax()),
             "probabilities": [round(float(v), 5) for v in p]}
            for (episode, frame, timestamp), p in zip(batch[FRAMES_KEY], probabilities)]


@qvl.hookimpl
def evaluate(task: qvl.Task, config: RunConfig, predictions: list[dict], dataset: Any,
             out_dir: Path) -> dict[str, Any] | None:
    if task.name != TASK_NAME:
        return None
    from qvl_reward.report import evaluate_predictions

    return evaluate_predictions(config, predictions, dataset, Path(out_dir))


@qvl.hookimpl
def report_predictions(task: qvl.Task, config: RunConfig, predictions: list[dict], dataset: Any,
                       out_dir: Path) -> dict[str, Any] | None:
    if task.name != TASK_NAME:
        return None
    from qvl_reward.report import write_reward_curves

    return write_reward_curves(config, predictions, dataset, Path(out_dir))
