"""The task: what a plugin registers, and the one place that says which plugin owns it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

STANDARD_STAGES = ("train", "eval", "predict")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value or not all(ch.isalnum() or ch in "-_" for ch in value):
        raise ValueError(f"task name {value!r} must be non-empty letters, digits, '-' or '_'")


def _check_stage_options(instance: Any, attribute: attrs.Attribute, value: Mapping[str, Mapping[str, str]]) -> None:
    for stage, options in value.items():
        for option, key in options.items():
            if not option.startswith("--") or len(option) < 3 or not key or "=" in key:
                raise ValueError(f"stage {stage!r}: option {option!r} -> {key!r}: expected '--name' -> 'dotted.key'")


def _summary(config_class: type) -> str:
    # the class's own docstring only: inspect.getdoc would inherit object's
    doc = config_class.__dict__.get("__doc__") or ""
    return " ".join(doc.strip().split("\n\n")[0].split())


@attrs.frozen
class Task:
    """A task a plugin adds to qvl, handed to the core through the ``register_tasks`` hook.

    :param name: what users type in ``qvl run NAME STAGE``.
    :param config_class: an attrs class with defaults for every field; the ``[task]`` table of a
        run's TOML is structured into it.
    :param description: one line for ``qvl tasks``; by default the first paragraph of
        ``config_class``'s docstring (the settings class says what the task does, once).
    :param defaults: nested overrides of the generic run config that suit this task, for example
        ``{"train": {"steps": 200}, "backbone": {"finetune": "full"}}``; a user's file and
        ``--set`` still win over them.
    :param stages: extra stages beyond train/eval/predict, name -> function (for example
        ``make-data``). The function receives what it names among its parameters, as hooks do:
        ``config`` (the effective :class:`~qvl.config.RunConfig`), ``run_dir`` (``--run-dir`` or
        None), ``input`` (``--input`` or None), ``resume`` (``--resume``), ``host``, ``task``,
        ``accelerator`` (a new ``accelerate.Accelerator``), ``save_vis`` (``--save-vis``),
        ``checkpoint`` (the path that ``--checkpoint`` chooses in ``--run-dir`` or the newest run:
        best, else last) and ``head`` (the task's head with that checkpoint's weights, on the CPU
        in eval mode). A stage asking for ``checkpoint`` or ``head`` works on a trained run: its
        ``config`` is that run's saved config with ``--set`` on top, and ``run_dir`` its folder.
    :param stage_options: command-line options of a stage, stage -> {"--option": "dotted.config.key"}:
        ``qvl run NAME STAGE --option VALUE`` is ``--set dotted.config.key=VALUE`` (for example
        ``{"rollout": {"--server": "task.rollout.server"}}``). The core's own options keep their
        meaning.
    :param plugin: filled in by the core with the name of the plugin that registered the task.
    """

    name: str = attrs.field(validator=_check_name)
    config_class: type
    description: str = attrs.field(default=attrs.Factory(lambda self: _summary(self.config_class), takes_self=True))
    defaults: Mapping[str, Any] = attrs.field(factory=dict)
    stages: Mapping[str, Callable[..., Any]] = attrs.field(factory=dict)
    stage_options: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, validator=_check_stage_options)
    plugin: str = ""

    @property
    def all_stages(self) -> tuple[str, ...]:
        return STANDARD_STAGES + tuple(self.stages)


def task_defaults(module_file: str, name: str = "defaults.toml") -> dict[str, Any]:
    """A task's ``defaults`` from a TOML file beside the plugin's module: ``task_defaults(__file__)``.

    The file is written as a user's run config is (``[train]``, ``[task.synthetic]``, ...), with
    the reasons for each value as comments; the wheel must carry it (setuptools ``package-data``).

    :raises UserError: the file is missing or not valid TOML, naming it.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    from qvl.errors import UserError

    path = Path(module_file).with_name(name)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: the task's defaults file is missing (is it in the wheel's package-data?)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None


def stage_option_overrides(task: Task, stage: str, arguments: list[str]) -> list[str]:
    """``--set`` overrides for a stage's own options (``["--server", "URL"]`` or ``["--server=URL"]``).

    :raises ValueError: an option the stage does not have, or one without a value.
    """
    options = dict(task.stage_options.get(stage, {}))
    overrides: list[str] = []
    rest = list(arguments)
    while rest:
        item = rest.pop(0)
        name, has_value, value = item.partition("=")
        if name not in options:
            known = ", ".join(options) or "none"
            raise ValueError(f"qvl run {task.name} {stage}: unknown option {item!r} (this stage's own options: "
                             f"{known}; any setting: --set KEY=VALUE)")
        if not has_value:
            if not rest or rest[0].startswith("--"):
                raise ValueError(f"qvl run {task.name} {stage}: {name} needs a value")
            value = rest.pop(0)
        overrides.append(f"{options[name]}={value}")
    return overrides
