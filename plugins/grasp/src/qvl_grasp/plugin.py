"""The ``grasp`` task and the table of its hook implementations (entry point ``qvl.grasp``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import qvl
from qvl_grasp.config import GraspConfig
from qvl_grasp.data import data_root, make_data

# hook API 4: the core calls these hooks for this plugin's own task only
QVL_HOOK_API = 4
# the description is the config class's docstring; defaults.toml lies beside this module
TASK = qvl.Task("grasp", GraspConfig, defaults=qvl.task_defaults(__file__), stages={"make-data": make_data})
register_tasks = qvl.registers(TASK)


@qvl.hookimpl
def build_dataset(task: qvl.Task, config: qvl.RunConfig, split: str) -> Any:
    from qvl_grasp.readers import read_split

    if split == "predict":
        if config.predict.input:
            from qvl_grasp.predict_inputs import predict_samples

            return predict_samples(Path(config.predict.input), config.task.predict_target)
        split = config.predict.split
    root = data_root(config, create=True)
    samples = read_split(config.task.data_format, root, split, config.task.split_files, with_masks=split != "train",
                         split_ratios=config.task.split_ratios)
    if split == "train" and config.train.prepared_cache:
        from qvl_grasp.working_copies import working_copies

        size = tuple(config.task.model_image_size)
        return working_copies(samples, size, name=f"grasp-{split}-{size[0]}x{size[1]}",
                              rotates=config.task.augment.rotates)
    return samples


@qvl.hookimpl
def build_collator(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, stage: str) -> Any:
    from qvl_grasp.collate import EnsembleCollator, TrainCollator

    if stage == "train":
        return TrainCollator(config.task, backbone.processor, seed=config.seed,
                             cached_prompts=config.train.prepared_cache)
    members = config.task.ensemble.eval if stage == "eval" else config.task.ensemble.predict
    return EnsembleCollator(config.task, backbone.processor, members=members, seed=config.seed)


@qvl.hookimpl
def loss(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, batch: dict[str, Any]) -> dict[str, Any] | None:
    if config.task.loss_vocabulary == "full":
        from qvl import chat

        return chat.lm_loss(backbone.model, batch)
    from qvl_grasp.answer_loss import answer_vocabulary_loss

    return answer_vocabulary_loss(backbone.model, backbone.tokenizer, batch)


@qvl.hookimpl
def decode(task: qvl.Task, config: qvl.RunConfig, backbone: qvl.Backbone, batch: dict[str, Any]) -> list[dict] | None:
    from qvl_grasp.collate import decode_batch

    return decode_batch(config.task, backbone, batch)


# optionalhook: a core before hook API 5 has no answer_constraint spec, and its plugin loader runs
# pluggy's check_pending, which drops a plugin with an unknown hook that is not marked optional. So
# marked, the hook is ignored there and grasp keeps QVL_HOOK_API = 4: nothing else it uses is newer.
@qvl.hookimpl(optionalhook=True)
def answer_constraint(task: qvl.Task, config: qvl.RunConfig) -> Any:
    """The answer grammar ``decode`` uses, for ``qvl export`` (none when ``task.constrained`` is off)."""
    from qvl_grasp.grammar import grasp_constraint

    return grasp_constraint() if config.task.constrained else None


@qvl.hookimpl
def evaluate(task: qvl.Task, config: qvl.RunConfig, predictions: list[dict], dataset: Any,
             out_dir: Path) -> qvl.EvalResult | None:
    from qvl_grasp.report import evaluate_predictions

    return evaluate_predictions(config, predictions, dataset, Path(out_dir))


@qvl.hookimpl
def report_predictions(task: qvl.Task, config: qvl.RunConfig, predictions: list[dict], dataset: Any,
                       out_dir: Path) -> dict[str, Any] | None:
    from qvl_grasp.report import write_grasps

    return write_grasps(config, predictions, dataset, Path(out_dir))
