"""One entry point for every stage, shared by the CLI and the pytest kit."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qvl.config import ConfigError, load_config
from qvl.errors import UserError
from qvl.plugins import PluginHost
from qvl.runner.rundir import RunDir
from qvl.task import Task

# What a task's own stage function may ask for by parameter name, as hook implementations do.
# ``checkpoint`` is the chosen checkpoint of a trained run (``--run-dir``, else the newest) and
# ``head`` the task's head loaded from it, in eval mode; a stage asking for either gets that
# run's saved config (with ``--set`` on top) and its folder as ``run_dir``.
STAGE_ARGUMENTS = ("config", "run_dir", "input", "resume", "host", "task", "accelerator", "checkpoint", "head",
                   "save_vis")
TRAINED_RUN_ARGUMENTS = {"checkpoint", "head"}


def run_stage(
    host: PluginHost,
    task_name: str,
    stage: str,
    *,
    config_files: Iterable[str | Path] = (),
    overrides: Iterable[str] = (),
    run_dir: str | Path | None = None,
    resume: bool = False,
    predict_input: str | None = None,
    save_vis: bool = False,
    checkpoint: str | None = None,
) -> Any:
    """Run ``stage`` of ``task_name``; returns the stage's result object."""
    task = host.task(task_name)
    if stage not in task.all_stages:
        raise ConfigError([f"task {task_name!r} has no stage {stage!r}; stages: {', '.join(task.all_stages)}"])
    overrides = list(overrides)
    if predict_input is not None:
        overrides.append(f"predict.input={_toml_string(predict_input)}")
    if save_vis and stage in ("eval", "predict"):
        overrides.append(f"{stage}.save_vis=true")

    if stage == "train":
        from qvl.runner.training import train

        if run_dir is not None:
            RunDir(Path(run_dir)).check_task(task.name, stage)
        if run_dir is not None and resume and (Path(run_dir) / "config.toml").is_file():
            config = load_config(task, config_files, overrides, base=RunDir(Path(run_dir)).saved_config())
        else:
            config = load_config(task, config_files, overrides)
            if run_dir is not None and not resume and RunDir(Path(run_dir)).checkpoints():
                raise ConfigError([f"{run_dir} already has checkpoints; continue it with --resume, "
                                   "or train into another --run-dir"])
        return train(host, task, config, Path(run_dir) if run_dir is not None else None, resume=resume)

    if stage in ("eval", "predict"):
        from qvl.runner import inference

        existing = _existing_run(task, stage, config_files, overrides, run_dir)
        config = load_config(task, config_files, overrides, base=existing.saved_config())
        run = inference.evaluate if stage == "eval" else inference.predict
        return run(host, task, config, existing, checkpoint=checkpoint)

    wanted = stage_parameters(task, stage)
    existing = None
    if TRAINED_RUN_ARGUMENTS & set(wanted):
        # a stage that works on a trained run gets that run's settings, as eval does
        existing = _existing_run(task, stage, config_files, overrides, run_dir)
        config = load_config(task, config_files, overrides, base=existing.saved_config())
    else:
        config = load_config(task, config_files, overrides)

    def trained_checkpoint() -> Path:
        found = existing.checkpoint(checkpoint)
        if found is None:
            raise UserError(f"{existing.path}: no complete checkpoint; run 'qvl run {task.name} train' first")
        return found

    available: dict[str, Callable[[], Any]] = {
        "config": lambda: config,
        "run_dir": lambda: existing.path if existing is not None else Path(run_dir) if run_dir is not None else None,
        "input": lambda: predict_input,
        "resume": lambda: resume,
        "host": lambda: host,
        "task": lambda: task,
        "accelerator": _accelerator,
        "checkpoint": trained_checkpoint,
        "head": lambda: _trained_head(host, task, config, trained_checkpoint()),
        "save_vis": lambda: save_vis,
    }
    return task.stages[stage](**{name: available[name]() for name in wanted})


def stage_parameters(task: Task, stage: str) -> list[str]:
    """The arguments a task's stage function asks for; an unknown one is the plugin's mistake."""
    function = task.stages[stage]
    names = list(inspect.signature(function).parameters)
    unknown = [name for name in names if name not in STAGE_ARGUMENTS]
    if unknown:
        raise TypeError(f"stage {stage!r} of task {task.name!r} asks for {unknown}; a stage function may take "
                        f"any of {', '.join(STAGE_ARGUMENTS)}")
    return names


def _existing_run(task: Task, stage: str, config_files: Iterable[str | Path], overrides: list[str],
                  run_dir: str | Path | None) -> RunDir:
    if run_dir is not None:
        run = RunDir(Path(run_dir))
        run.check_task(task.name, stage)
        return run
    probe = load_config(task, config_files, overrides)
    return RunDir.latest(probe.output_dir, task.name)


def _trained_head(host: PluginHost, task: Task, config: Any, checkpoint: Path) -> Any:
    """The task's head with the weights of ``checkpoint``, on the CPU in eval mode."""
    from qvl.runner.assembly import build_head

    head = build_head(host.call, task, config, None, checkpoint)
    if head is None:
        raise UserError(f"task {task.name!r} builds no head, so it has no trained head to load")
    return head.eval()


def _accelerator() -> Any:
    import torch
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

