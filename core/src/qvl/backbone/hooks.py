"""The core's built-in ``load_backbone``: registered ``trylast`` so any plugin can replace it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qvl.markers import hookimpl

if TYPE_CHECKING:
    import pluggy

    from qvl.backbone import Backbone
    from qvl.config import RunConfig
    from qvl.task import Task


class DefaultBackbone:
    """A plugin object rather than a module: it needs the hook relay to call ``prepare_backbone``."""

    def __init__(self, hook: pluggy.HookRelay):
        self.hook = hook

    @hookimpl(trylast=True)
    def load_backbone(self, task: Task, config: RunConfig, stage: str) -> Backbone:
        from qvl.backbone.loading import load

        def prepare(model: Any, processor: Any) -> None:
            self.hook.prepare_backbone(task=task, config=config, model=model, processor=processor)

        return load(config.backbone, prepare=prepare, stage=stage)


plugin = DefaultBackbone  # what qvl.plugins registers for this built-in, given the hook relay
