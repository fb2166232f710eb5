"""The core's built-in ``load_backbone``: registered ``trylast`` so any plugin can replace it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qvl.markers import hookimpl

if TYPE_CHECKING:
    from qvl.backbone import Backbone
    from qvl.config import RunConfig
    from qvl.task import Task


@hookimpl(trylast=True)
def load_backbone(task: Task, config: RunConfig) -> Backbone:
    from qvl.backbone.loading import load

    return load(config.backbone)
