"""The ``segment`` task and the table of its hook implementations (entry point ``qvl.segment``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import qvl
from qvl_segment.config import SegmentConfig
from qvl_segment.data import SplitInfo, make_data, predict_samples, prepare, split_samples

if TYPE_CHECKING:
    import torch

# hook API 4: the core calls these hooks for this plugin's own task only
QVL_HOOK_API = 4
# the description is the config class's docstring; defaults.toml lies beside this module
TASK = qvl.Task("segment", SegmentConfig, defaults=qvl.task_defaults(__file__),
                stages={"make-data": make_data, "prepare": prepare})
register_tasks = qvl.registers(TASK)


@qvl.hookimpl
def prepare_backbone(task: qvl.Task, config: qvl.RunConfig, model: Any, processor: Any) -> None:
    from qvl_segment.tokens import add_frame_token

    add_frame_token(model, processor)


@qvl.hookimpl
def build_dataset(task: qvl.Task, config: qvl.RunConfig, split: str) -> qvl.Samples[SplitInfo]:
    if split == "predict":
        if config.predict.input:
            return predict_samples(config, Path(config.predict.input).expanduser())
        split = config.predict.split
    return split_samples(config, split)


@qvl.hookimpl
def build_collator(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, stage: str) -> Any:
    from qvl_segment.collate import SegmentCollator

    if stage != "train":
        return SegmentCollator(config, backbone.processor, stage)
    from qvl_segment.encoded_rows import training_rows

    return SegmentCollator(config, backbone.processor, stage, training_rows(config, backbone.processor,
                                                                            config.backbone.name))


@qvl.hookimpl
def build_head(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone) -> Any:
    if config.task.mode == "lm":
        return None
    from qvl_segment.heads import SegmentHeads

    t = config.task
    return SegmentHeads(backbone.hidden_size, t.head_channels, t.head_layers, t.k_max)


@qvl.hookimpl
def loss(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, head: torch.nn.Module | None,
         batch: dict[str, Any], step: int, max_steps: int) -> dict[str, Any] | None:
    from qvl_segment.model import training_loss

    vocabulary = _vocabulary(config, backbone) if config.task.loss_vocabulary == "answer" else None
    return training_loss(config, backbone, head, batch, step, max_steps, vocabulary)


_VOCABULARY: dict[int, list[int]] = {}


def _vocabulary(config: qvl.RunConfig, backbone: qvl.Backbone) -> list[int]:
    """The tokens of every training answer (computed once per run)."""
    if id(config) not in _VOCABULARY:
        from qvl_segment.answers import answer_text
        from qvl_segment.model import answer_vocabulary

        digits = config.task.mode == "lm"
        episodes = split_samples(config, "train").info.episodes
        answers = [answer_text(e.segments, frames_as_digits=digits) for e in episodes]
        if digits:  # any frame number, not only those the training answers hold
            answers += [str(d) for d in range(10)]
        _VOCABULARY[id(config)] = answer_vocabulary(backbone.tokenizer, answers)
    return _VOCABULARY[id(config)]


@qvl.hookimpl
def decode(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, head: Any, batch: dict[str, Any]
           ) -> list[dict] | None:
    from qvl_segment.inference import decode_batch

    return decode_batch(config, backbone, head, batch, _skills(config))


_SKILLS: dict[int, list[str]] = {}


def _skills(config: qvl.RunConfig) -> list[str]:
    """The skill names the answers may use: those of the training episodes (read once per run)."""
    if id(config) not in _SKILLS:
        _SKILLS[id(config)] = split_samples(config, "train").info.skills
    return _SKILLS[id(config)]


@qvl.hookimpl
def evaluate(task: qvl.Task, config: qvl.RunConfig, predictions: list[dict], out_dir: Path,
             info: SplitInfo) -> qvl.EvalResult | None:
    from qvl_segment.report import evaluate_predictions

    episodes = info.episodes[:len(predictions)]  # validation scores the split's first train.eval_samples
    if config.eval.save_vis:
        from qvl_segment.plots import draw_timelines

        draw_timelines(predictions, episodes, config.task, Path(out_dir) / "timelines")
    return evaluate_predictions(config, predictions, episodes, info.train_episodes, info.skills, Path(out_dir))


@qvl.hookimpl
def report_predictions(task: qvl.Task, config: qvl.RunConfig, predictions: list[dict], out_dir: Path,
                       info: SplitInfo) -> dict[str, Any] | None:
    from qvl_segment.plots import draw_timelines

    if config.predict.save_vis:
        draw_timelines(predictions, info.episodes, config.task, Path(out_dir) / "timelines")
    counts = [len(p["segments"]) for p in predictions]
    return {"episodes": len(predictions), "segments": sum(counts),
            "valid_json": sum(bool(p.get("valid")) for p in predictions)}
