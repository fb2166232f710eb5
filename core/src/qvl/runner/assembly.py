"""Assemble a run from hooks: backbone, head and data of a task, optionally from a checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

from qvl.config import RunConfig
from qvl.errors import UserError
from qvl.runner.checkpoint import load_head, restore_config
from qvl.samples import Samples
from qvl.task import Task


@attrs.define
class Parts:
    backbone: Any
    head: Any


def load_parts(call: Callable[..., Any], task: Task, config: RunConfig, checkpoint: Path | None,
               stage: str) -> Parts:
    """The backbone (unless ``uses_backbone`` says the stage needs none) and the head, in fp32."""
    needs_backbone = call("uses_backbone", required=False, task=task, config=config, stage=stage)
    backbone = None
    if needs_backbone is not False:
        load_config = restore_config(config, checkpoint) if checkpoint is not None else config
        backbone = call("load_backbone", task=task, config=load_config, stage=stage)
    return Parts(backbone=backbone, head=build_head(call, task, config, backbone, checkpoint))


def build_head(call: Callable[..., Any], task: Task, config: RunConfig, backbone: Any,
               checkpoint: Path | None) -> Any:
    """The task's head (None when it builds none) in fp32, with ``checkpoint``'s weights if given."""
    head = call("build_head", task=task, config=config, backbone=backbone, required=False)
    if head is not None:
        head.float()  # trainable weights stay fp32; mixed precision autocasts the matmuls
    if checkpoint is not None:
        load_head(checkpoint, head)
    return head


def checked_dataset(call: Callable[..., Any], task: Task, config: RunConfig, split: str,
                    limit: int | None = None) -> Sequence[Any]:
    data = call("build_dataset", task=task, config=config, split=split)
    if len(data) == 0:
        raise UserError(f"task {task.name!r}: split {split!r} has no samples")
    if limit is not None and limit < len(data):
        data = data.first(limit) if isinstance(data, Samples) else FirstSamples(data, limit)
    return data


class FirstSamples(Sequence):
    """The first ``limit`` samples of a data set that is not a :class:`qvl.samples.Samples`.

    Kept for plugins written for hook API 3, whose ``evaluate`` may read attributes of the data set
    they built: those are forwarded. Hook API 4 passes such things as ``Samples.info`` instead.
    """

    def __init__(self, source: Sequence[Any], limit: int) -> None:
        self.source = source
        self.limit = limit

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, index: int) -> Any:  # type: ignore[override]
        if not -self.limit <= index < self.limit:
            raise IndexError(index)
        return self.source[index % self.limit]

    def __getattr__(self, name: str) -> Any:
        if name in ("source", "limit"):  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.source, name)
