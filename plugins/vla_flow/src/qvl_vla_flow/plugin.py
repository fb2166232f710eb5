"""The ``vla_flow`` task and the table of its hook implementations (entry point ``qvl.vla_flow``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import qvl
from qvl_vla_flow.config import VlaFlowConfig
from qvl_vla_flow.convert import convert_stage
from qvl_vla_flow.memory_check import memory_check_stage
from qvl_vla_flow.pipeline import features_stage, split_samples
from qvl_vla_flow.policy_backend import serve_stage
from qvl_vla_flow.record import record_stage
from qvl_vla_flow.rollout import rollout_stage

if TYPE_CHECKING:
    import torch
    from qvl_vla_flow.samples import SplitInfo

# hook API 4: the core calls these hooks for this plugin's own task only
QVL_HOOK_API = 4
TASK = qvl.Task(
    "vla_flow", VlaFlowConfig, defaults=qvl.task_defaults(__file__),  # description: VlaFlowConfig's docstring
    stages={"record": record_stage, "convert": convert_stage, "features": features_stage,
            "memory-check": memory_check_stage, "rollout": rollout_stage,
            "serve": serve_stage},
    stage_options={
        "rollout": {"--server": "task.rollout.server", "--episodes": "task.rollout.episodes",
                    "--env": "task.rollout.env"},
        "serve": {"--host": "task.serve.host", "--port": "task.serve.port", "--token": "task.serve.token"},
    },
)
register_tasks = qvl.registers(TASK)


@qvl.hookimpl
def uses_backbone(task: qvl.Task, config: qvl.RunConfig, stage: str) -> bool | None:
    return False  # every stage reads cached features; the feature stage loads the backbone itself


@qvl.hookimpl
def build_dataset(task: qvl.Task, config: qvl.RunConfig, split: str) -> qvl.Samples[SplitInfo]:
    if split == "predict":
        split = config.predict.split
    return split_samples(config, split)


@qvl.hookimpl
def build_collator(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone | None, stage: str) -> Any:
    from functools import partial

    from qvl_vla_flow.samples import collate

    return partial(collate, use_state=config.task.state != "none")


@qvl.hookimpl
def build_head(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone | None) -> Any:
    from qvl_vla_flow.model import build_policy

    return build_policy(config)


@qvl.hookimpl
def loss(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone | None, head: torch.nn.Module,
         batch: dict[str, Any]) -> dict[str, Any] | None:
    return {"loss": head.loss(batch["features"], batch.get("state"), batch["actions"], batch["valid"])}


@qvl.hookimpl
def param_groups(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone | None,
                 head: torch.nn.Module) -> list[dict[str, Any]] | None:
    from qvl_vla_flow.model import optimizer_groups

    return optimizer_groups(config, head)


@qvl.hookimpl
def decode(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone | None, head: torch.nn.Module,
           batch: dict[str, Any]) -> list[dict] | None:
    from qvl_vla_flow.model import decode_batch

    return decode_batch(config, head, batch)


@qvl.hookimpl
def evaluate(task: qvl.Task, config: qvl.RunConfig, predictions: list[dict], dataset: Any, out_dir: Path,
             info: SplitInfo) -> qvl.EvalResult | None:
    from qvl_vla_flow.report import evaluate_predictions

    return evaluate_predictions(config, predictions, dataset, info, Path(out_dir))


@qvl.hookimpl(wrapper=True)
def validate(task: qvl.Task, config: qvl.RunConfig, head: torch.nn.Module | None, accelerator: Any,
             out_dir: Path) -> Any:
    """The core's validation (val/mse, ...) plus, with ``task.rollout.validate_episodes``, a short
    Miniworld rollout: ``val/success`` can then pick the best checkpoint."""
    results = yield
    if not config.task.rollout.validate_episodes or head is None:
        return results
    from qvl_vla_flow.rollout import validation_rollout

    return {**(results or {}), **validation_rollout(config, head, accelerator, Path(out_dir))}
