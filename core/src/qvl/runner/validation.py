"""The core's default ``validate`` hook, registered ``trylast`` like every built-in default.

Kept free of heavy imports at module level: ``qvl tasks`` and ``qvl plugins`` load it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qvl.markers import hookimpl


class DefaultValidation:
    """The core's ``validate``: loss on the validation split, then the task's metrics on it."""

    def __init__(self, hook: Any):
        self.hook = hook
        # the validation samples of the run in progress, built once: (task name, config, samples)
        self._data: tuple[str, Any, Sequence[Any]] | None = None

    def _call(self, name: str, **kwargs: Any) -> Any:
        from qvl.plugins import call_hook

        return call_hook(self.hook, name, **kwargs)

    @hookimpl(trylast=True)
    def validate(self, task: Any, config: Any, backbone: Any, head: Any, step: int, accelerator: Any,
                 out_dir: Path) -> dict[str, float]:
        from qvl.runner.assembly import checked_dataset
        from qvl.runner.evaluation import dataset_loss, decode_dataset, flatten_metrics, scored

        # compared by identity, not id(): an id can be reused by the next run's config in one process
        if self._data is None or self._data[0] != task.name or self._data[1] is not config:
            samples = checked_dataset(self._call, task, config, config.train.eval_split, config.train.eval_samples)
            self._data = (task.name, config, samples)
        data = self._data[2]
        results = {"val/loss": dataset_loss(self._call, task, config, backbone, head, data,
                                            config.eval.batch_size, accelerator, step)}
        predictions = decode_dataset(self._call, task, config, backbone, head, data, "eval",
                                     config.eval.batch_size, accelerator, label="validate")
        metrics = None
        if accelerator.is_main_process:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            metrics = scored(self._call, task, config, predictions, data, Path(out_dir), required=False)
        if accelerator.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            metrics = broadcast_object_list([metrics])[0]
        results.update(flatten_metrics(metrics or {}, "val"))
        return results


plugin = DefaultValidation  # what qvl.plugins registers for this built-in, given the hook relay
