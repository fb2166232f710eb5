"""The task: what a plugin registers, and the one place that says which plugin owns it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

STANDARD_STAGES = ("train", "eval", "predict")


def _check_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value or not all(ch.isalnum() or ch in "-_" for ch in value):
        raise ValueError(f"task name {value!r} must be non-empty letters, digits, '-' or '_'")


@attrs.frozen
class Task:
    """A task a plugin adds to qvl, handed to the core through the ``register_tasks`` hook.

    :param name: what users type in ``qvl run NAME STAGE``.
    :param config_class: an attrs class with defaults for every field; the ``[task]`` table of a
        run's TOML is structured into it.
    :param description: one line for ``qvl tasks``.
    :param defaults: nested overrides of the generic run config that suit this task, for example
        ``{"train": {"steps": 200}, "backbone": {"finetune": "full"}}``; a user's file and
        ``--set`` still win over them.
    :param stages: extra stages beyond train/eval/predict, name -> function (for example
        ``make-data``). The function receives what it names among its parameters, as hooks do:
        ``config`` (the effective :class:`~qvl.config.RunConfig`), ``run_dir`` (``--run-dir`` or
        None), ``input`` (``--input`` or None), ``resume`` (``--resume``), ``host``, ``task``,
        ``accelerator`` (a new ``accelerate.Accelerator``) and ``checkpoint`` (the path that
        ``--checkpoint`` chooses in ``--run-dir`` or the newest run: best, else last).
    :param plugin: filled in by the core with the name of the plugin that registered the task.
    """

    name: str = attrs.field(validator=_check_name)
    config_class: type
    description: str = ""
    defaults: Mapping[str, Any] = attrs.field(factory=dict)
    stages: Mapping[str, Callable[..., Any]] = attrs.field(factory=dict)
    plugin: str = ""

    @property
    def all_stages(self) -> tuple[str, ...]:
        return STANDARD_STAGES + tuple(self.stages)
