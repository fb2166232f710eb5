"""Loading a task as the benchmarks that drive its hooks need it (imported as a sibling module: running
``python benchmarks/NAME.py`` puts this folder on ``sys.path``)."""

from typing import Any


def load_task(name: str, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Any, Any, Any]:
    """``(host, task, config)``: the plugin host as the CLI builds it, the task ``name`` and its config with
    ``--set``-style ``overrides`` over the task's defaults."""
    from qvl.config import load_config
    from qvl.plugins import load_plugins

    host = load_plugins()
    task = host.task(name)
    return host, task, load_config(task, [], list(overrides))


def frozen_backbone(host: Any, task: Any) -> Any:
    """The task's default backbone, frozen, loaded as for training: what its training collator needs (the
    processor) without training state."""
    from qvl.config import load_config

    return host.call("load_backbone", task=task, config=load_config(task, [], ["backbone.finetune=frozen"]),
                     stage="train")
