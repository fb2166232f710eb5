"""The ``reward`` task and the table of its hook implementations (entry point ``qvl.reward``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import qvl
from qvl_reward import cached
from qvl_reward.collate import FRAMES_KEY, LABELS_KEY
from qvl_reward.config import RewardConfig
from qvl_reward.data import class_weights, make_data, num_classes, open_source, split_frames

if TYPE_CHECKING:
    from qvl_reward.frames import SplitInfo

# hook API 4: the core calls these hooks for this plugin's own task only
QVL_HOOK_API = 4
# the description is the config class's docstring; defaults.toml lies beside this module
TASK = qvl.Task("reward", RewardConfig, defaults=qvl.task_defaults(__file__), stages={"make-data": make_data})
register_tasks = qvl.registers(TASK)


@qvl.hookimpl
def uses_backbone(task: qvl.Task, config: qvl.RunConfig, stage: str) -> bool | None:
    # cached mode: every stage's samples carry their features (built by the plugin's own extractor)
    return False if cached.enabled(config) else None


@qvl.hookimpl
def build_dataset(task: qvl.Task, config: qvl.RunConfig, split: str) -> qvl.Samples[SplitInfo]:
    from qvl_reward.frames import SplitInfo

    frames = _frames(config, split)
    info = SplitInfo(refs=frames.refs)  # the labels and episodes for evaluate, without decoding a frame
    if cached.enabled(config):
        return qvl.Samples(cached.with_features(config, frames), info)
    if split == "train" and config.train.prepared_cache:
        from qvl_reward.prepared_frames import prepared_frames

        size = tuple(config.task.image_size)
        return qvl.Samples(prepared_frames(frames, size, name=f"reward-{split}-{size[0]}x{size[1]}"), info)
    return qvl.Samples(frames, info)


def _frames(config: qvl.RunConfig, split: str) -> Any:
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
def build_collator(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, stage: str) -> Any:
    if cached.enabled(config):
        return cached.CachedCollator(with_labels=stage == "train")
    from qvl_reward.collate import RewardCollator

    return RewardCollator(config.task, backbone.processor, with_labels=stage == "train",
                          cached_prompts=config.train.prepared_cache)


@qvl.hookimpl
def build_head(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone) -> Any:
    if cached.enabled(config):
        return cached.build_head(config, num_classes(config))
    from qvl_reward.head import RewardHead

    return RewardHead(backbone.hidden_size, num_classes(config), dtype=backbone.dtype)


@qvl.hookimpl
def loss(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, head: Any, batch: dict[str, Any]) -> Any:
    import torch
    import torch.nn.functional as F

    from qvl_reward.head import logits_of

    logits = logits_of(backbone, head, batch)
    labels = batch[LABELS_KEY]
    weights = class_weights(config, logits.shape[-1])
    weight = torch.tensor(weights, device=logits.device) if weights else None
    value = F.cross_entropy(logits, labels, weight=weight)
    accuracy = (logits.argmax(dim=-1) == labels).float().mean()
    return {"loss": value, "accuracy": accuracy.detach()}


@qvl.hookimpl
def decode(task: qvl.Task, backbone: qvl.Backbone, head: Any, batch: dict[str, Any]) -> list[dict] | None:
    from qvl_reward.head import logits_of

    probabilities = logits_of(backbone, head, batch).softmax(dim=-1)
    return [{"episode": episode, "frame": frame, "timestamp": timestamp, "class": int(p.argmax()),
             "probabilities": [round(float(v), 5) for v in p]}
            for (episode, frame, timestamp), p in zip(batch[FRAMES_KEY], probabilities)]


@qvl.hookimpl
def evaluate(task: qvl.Task, config: qvl.RunConfig, predictions: list[dict], out_dir: Path,
             info: SplitInfo) -> qvl.EvalResult | None:
    from qvl_reward.report import evaluate_predictions

    # predictions[i] is the split's i-th frame (validation scores the first train.eval_samples)
    return evaluate_predictions(config, predictions, info.refs[:len(predictions)], Path(out_dir))


@qvl.hookimpl
def report_predictions(task: qvl.Task, config: qvl.RunConfig, predictions: list[dict], out_dir: Path,
                       info: SplitInfo) -> dict[str, Any] | None:
    from qvl_reward.report import write_reward_curves

    return write_reward_curves(config, predictions, info.refs, Path(out_dir))
