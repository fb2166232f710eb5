"""The ``vqa`` task and the table of its hook implementations (entry point ``qvl.vqa``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import qvl
from qvl_vqa.config import VqaConfig
from qvl_vqa.data import existing_dataset, generate, generated_dataset, make_data, stats

if TYPE_CHECKING:
    from qvl_vqa.samples import SplitInfo

# hook API 4: the core calls these hooks for this plugin's own task only
QVL_HOOK_API = 4
# the description is the config class's docstring; defaults.toml lies beside this module
TASK = qvl.Task("vqa", VqaConfig, defaults=qvl.task_defaults(__file__),
                stages={"make-data": make_data, "generate": generate, "stats": stats})
register_tasks = qvl.registers(TASK)


@qvl.hookimpl
def build_dataset(task: qvl.Task, config: qvl.RunConfig, split: str) -> qvl.Samples[SplitInfo]:
    from qvl_vqa.samples import VqaSamples

    if split == "predict":
        split = config.predict.split
        if config.predict.input:  # a data set generated before, from the store it names
            folder, store = existing_dataset(config, Path(config.predict.input).expanduser())
            samples = VqaSamples(folder, split, store, both_orders=config.task.both_orders)
            return qvl.Samples(samples, samples.info())
    folder, store = generated_dataset(config)
    samples = VqaSamples(folder, split, store, both_orders=split != "train" and config.task.both_orders)
    return qvl.Samples(samples, samples.info())


@qvl.hookimpl
def build_collator(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, stage: str) -> Any:
    from qvl_vqa.collate import PromptCollator, TrainCollator
    from qvl_vqa.shown_frames import run_shown_frames

    shown = run_shown_frames(config, backbone.processor, stage)  # clips as the model sees them, made once
    if stage == "train":
        from qvl_vqa.encoded_rows import training_rows

        return TrainCollator(config.task, backbone.processor, training_rows(config, backbone.processor, shown), shown)
    return PromptCollator(config.task, backbone.processor, shown)


@qvl.hookimpl
def loss(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, batch: dict[str, Any]) -> dict[str, Any] | None:
    from qvl import chat

    padding_free = config.train.padding_free  # one-clip and two-clip rows: packed where that pays
    if config.task.loss_vocabulary == "full":
        return chat.lm_loss(backbone.model, batch, padding_free=padding_free)
    from qvl_vqa.answers import answer_token_ids

    return chat.answer_vocabulary_loss(backbone.model, batch, answer_token_ids(backbone.tokenizer),
                                       padding_free=padding_free)


@qvl.hookimpl
def decode(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, batch: dict[str, Any]) -> list[dict] | None:
    from qvl_vqa.answers import decode_batch

    return decode_batch(backbone, batch, config.task.progress_answer)


@qvl.hookimpl
def evaluate(task: qvl.Task, config: qvl.RunConfig, predictions: list[dict], out_dir: Path,
             info: SplitInfo) -> qvl.EvalResult | None:
    from qvl_vqa.report import evaluate_predictions

    return evaluate_predictions(config, predictions, info, Path(out_dir))
