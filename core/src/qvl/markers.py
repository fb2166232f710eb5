"""The marker plugins decorate their hook implementations with: ``@qvl.hookimpl``."""

from collections.abc import Callable
from typing import Any

import pluggy

hookimpl = pluggy.HookimplMarker("qvl")


def registers(*tasks: Any) -> Callable[..., None]:
    """A ``register_tasks`` hook implementation that registers ``tasks`` (:class:`qvl.Task`), for a
    plugin module that owns them: ``register_tasks = qvl.registers(TASK)``."""

    @hookimpl
    def register_tasks(register: Callable[[Any], None]) -> None:
        for task in tasks:
            register(task)

    return register_tasks
