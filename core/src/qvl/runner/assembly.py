"""Assemble a run from hooks: backbone, head and data of a task, optionally from a checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from qvl.config import RunConfig
from qvl.errors import UserError
from qvl.plugins import PluginHost
from qvl.runner.checkpoint import load_head, restore_config
from qvl.task import Task


@attrs.define
class Parts:
    backbone: Any
    head: Any


def load_parts(host: PluginHost, task: Task, config: RunConfig, checkpoint: Path | None) -> Parts:
    load_config = restore_config(config, checkpoint) if checkpoint is not None else config
    backbone = host.call("load_backbone", task=task, config=load_config)
    head = host.call("build_head", task=task, config=config, backbone=backbone, required=False)
    if checkpoint is not None:
        load_head(checkpoint, head)
    return Parts(backbone=backbone, head=head)


def dataset(host: PluginHost, task: Task, config: RunConfig, split: str, limit: int | None = None) -> Sequence[Any]:
    data = host.call("build_dataset", task=task, config=config, split=split)
    if len(data) == 0:
        raise UserError(f"task {task.name!r}: split {split!r} has no samples")
    if limit is not None and limit < len(data):
        data = [data[i] for i in range(limit)]
    return data
