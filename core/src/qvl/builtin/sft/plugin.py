"""The ``sft`` task's table of hook implementations (hook API 4: called for this task only)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qvl.builtin.sft.settings import SftConfig
from qvl.markers import hookimpl
from qvl.task import Task

if TYPE_CHECKING:
    from qvl.backbone import Backbone
    from qvl.config import RunConfig

QVL_HOOK_API = 4


def make_data(config: RunConfig) -> Path:
    from qvl.builtin.sft.data import GENERATOR

    return GENERATOR.make(config)


TASK = Task(
    name="sft",
    config_class=SftConfig,
    defaults={
        # tuned for the embedded tiny model on the synthetic example; for a real checkpoint see the
        # README (LoRA, a lower rate). The token embedding trains too: answers are free text, and
        # with it frozen (tied to the LM head) the loss stayed near 9 while greedy answers were right
        "backbone": {"finetune": "full"},
        "train": {"steps": 300, "batch_size": 8, "lr": 2e-3, "warmup_steps": 20, "log_every": 10,
                  "weight_decay": 0.01, "eval_every": 100, "eval_samples": 60, "best_metric": "val/model/exact_match"},
        "eval": {"batch_size": 16},
        "predict": {"batch_size": 16},
    },
    stages={"make-data": make_data},
)


@hookimpl
def register_tasks(register: Any) -> None:
    register(TASK)


@hookimpl
def build_dataset(config: RunConfig, split: str) -> Any:
    from qvl.builtin.sft import data

    if split == "predict":
        if config.predict.input:
            return data.predict_dataset(config, config.predict.input)
        split = config.predict.split
    return data.dataset(config, split)


@hookimpl
def build_collator(config: RunConfig, backbone: Backbone, stage: str) -> Any:
    from qvl.builtin.sft.collate import collator
    from qvl.builtin.sft.settings import answer_constraint as configured

    if stage == "train":
        configured(config.task)  # a bad regex or schema fails now, not at the first evaluation
    return collator(config.task, backbone.processor, training=stage == "train")


@hookimpl
def loss(config: RunConfig, backbone: Backbone, batch: dict[str, Any]) -> dict[str, Any]:
    from qvl import chat

    # every assistant turn's tokens, nothing else; rows of any length, packed where that pays
    return chat.lm_loss(backbone.model, batch, padding_free=config.train.padding_free)


@hookimpl
def answer_constraint(config: RunConfig) -> Any:
    from qvl.builtin.sft.settings import answer_constraint as configured

    return configured(config.task)


@hookimpl
def decode(config: RunConfig, backbone: Backbone, batch: dict[str, Any]) -> list[dict[str, Any]]:
    from qvl.builtin.sft.collate import answers

    return [{"answer": text} for text in answers(config.task, backbone, batch)]


@hookimpl
def evaluate(predictions: list[dict[str, Any]], dataset: Any, info: Any) -> Any:
    from qvl.builtin.sft.scoring import evaluate as score

    references = [sample["answer"] for sample in dataset]
    return score(references, [p["answer"] for p in predictions], info.majority, info.layouts)


@hookimpl
def report_predictions(predictions: list[dict[str, Any]], dataset: Any) -> dict[str, Any] | None:
    """For rows that carried an answer: how many the model matched."""
    from qvl.builtin.sft.scoring import scores

    pairs = [(sample["answer"], p["answer"]) for sample, p in zip(dataset, predictions) if sample["answer"] is not None]
    if not pairs:
        return None
    return {"samples": len(predictions), "with_reference": len(pairs), **scores(*zip(*pairs))}
