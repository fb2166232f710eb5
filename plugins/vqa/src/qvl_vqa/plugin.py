"""The ``vqa`` task and the table of its hook implementations (entry point ``qvl.vqa``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import qvl
from qvl_vqa.config import VqaConfig
from qvl_vqa.data import existing_dataset, generate, generated_dataset, make_data, stats

if TYPE_CHECKING:
    from qvl.backbone import Backbone
    from qvl.config import RunConfig
    from qvl_vqa.samples import SplitInfo

# hook API 4: the core calls these hooks for this plugin's own task only
QVL_HOOK_API = 4
TASK_NAME = "vqa"
TASK = qvl.Task(
    name=TASK_NAME,
    config_class=VqaConfig,
    description="Static VQA from robot trajectories (.npz store or LeRobot): which video makes more progress, "
                "how much progress (0-100), which video matches; answer-only SFT, constrained answers",
    defaults={
        # the loss reads the answer positions only; the 151,936-row token embedding needs no update
        "backbone": {"finetune": "full", "freeze_embeddings": True},
        # tuned for the tiny model on the embedded store (see docs/results.md): it learns to compare the
        # two videos after about 2,000 steps and to read progress after about 4,000; four frames a
        # clip keep a CPU step near 0.15 s
        "train": {"steps": 6000, "batch_size": 8, "lr": 2e-3, "warmup_steps": 50, "log_every": 50,
                  "weight_decay": 0.01, "save_every": 500, "eval_every": 500, "eval_samples": 96},
        # half the rows progress questions: with 30 % the tiny model never learnt to read progress
        # of whole clips; the question before the videos (the video tokens see the task: lower
        # validation loss, every metric better); 400 trajectories, 60 held out for test (intervals
        # narrower than 36's); answers from the model's distribution (mean: least squared error).
        # See docs/results.md
        "task": {"max_frames": 4, "num_samples": 12000, "sample_type_ratio": [0.5, 0.5, 0.0],
                 "question_first": True, "progress_answer": "mean", "synthetic": {"trajectories_per_task": 100}},
        "eval": {"batch_size": 16, "split": "test"},
        "predict": {"batch_size": 16, "split": "test"},
    },
    stages={"make-data": make_data, "generate": generate, "stats": stats},
)


@qvl.hookimpl
def register_tasks(register: Any) -> None:
    register(TASK)


@qvl.hookimpl
def build_dataset(task: qvl.Task, config: RunConfig, split: str) -> qvl.Samples[SplitInfo]:
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
def build_collator(task: qvl.Task, config: RunConfig, backbone: Backbone, stage: str) -> Any:
    from qvl_vqa.collate import PromptCollator, TrainCollator

    if stage == "train":
        return TrainCollator(config.task, backbone.processor)
    return PromptCollator(config.task, backbone.processor)


@qvl.hookimpl
def loss(task: qvl.Task, config: RunConfig, backbone: Backbone, batch: dict[str, Any]) -> dict[str, Any] | None:
    from qvl import chat

    if config.task.loss_vocabulary == "full":
        return chat.lm_loss(backbone.model, batch)
    from qvl_vqa.answers import answer_token_ids

    return chat.answer_vocabulary_loss(backbone.model, batch, answer_token_ids(backbone.tokenizer))


@qvl.hookimpl
def decode(task: qvl.Task, config: RunConfig, backbone: Backbone, batch: dict[str, Any]) -> list[dict] | None:
    from qvl_vqa.answers import decode_batch

    return decode_batch(backbone, batch, config.task.progress_answer)


@qvl.hookimpl
def evaluate(task: qvl.Task, config: RunConfig, predictions: list[dict], out_dir: Path,
             info: SplitInfo) -> qvl.EvalResult | None:
    from qvl_vqa.report import evaluate_predictions

    return evaluate_predictions(config, predictions, info, Path(out_dir))
