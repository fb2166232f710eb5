"""One entry point for every stage, shared by the CLI and the pytest kit."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from qvl.config import ConfigError, load_config
from qvl.plugins import PluginHost
from qvl.runner.rundir import RunDir


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
) -> Any:
    """Run ``stage`` of ``task_name``; returns the stage's result object."""
    task = host.task(task_name)
    if stage not in task.all_stages:
        raise ConfigError([f"task {task_name!r} has no stage {stage!r}; stages: {', '.join(task.all_stages)}"])
    overrides = list(overrides)
    if predict_input is not None:
        overrides.append(f"predict.input={_toml_string(predict_input)}")
    if save_vis:
        overrides.append("predict.save_vis=true")

    if stage == "train":
        from qvl.runner.training import train

        if run_dir is not None and resume and (Path(run_dir) / "config.toml").is_file():
            existing = RunDir(Path(run_dir))
            config = load_config(task, config_files, overrides, base=existing.saved_config())
        else:
            config = load_config(task, config_files, overrides)
            existing = RunDir(Path(run_dir)) if run_dir is not None else RunDir.new(config)
            if not resume and existing.checkpoints():
                raise ConfigError([f"{existing.path} already has checkpoints; continue it with --resume, "
                                   "or train into another --run-dir"])
        return train(host, task, config, existing, resume=resume)

    if stage in ("eval", "predict"):
        from qvl.runner import inference

        if run_dir is not None:
            existing = RunDir(Path(run_dir))
        else:
            probe = load_config(task, config_files, overrides)
            existing = RunDir.latest(probe.output_dir, task.name)
        config = load_config(task, config_files, overrides, base=existing.saved_config())
        return inference.evaluate(host, task, config, existing) if stage == "eval" else \
            inference.predict(host, task, config, existing)

    config = load_config(task, config_files, overrides)
    return task.stages[stage](config)


def _toml_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
