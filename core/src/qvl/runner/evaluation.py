"""Measuring a model on a split: decoding it and its loss.

Shared by ``eval``, ``predict`` and validation during training. Each process takes a contiguous
shard of the samples (no padding), so gathering gives every sample exactly once and in order,
whatever the data set's size and the number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from qvl.runner.modules import CollateWithIds, IndexedSamples

HookCall = Callable[..., Any]


def shard(count: int, rank: int, world: int) -> range:
    """The contiguous block of sample indices process ``rank`` of ``world`` handles."""
    per = math.ceil(count / world)
    return range(min(rank * per, count), min((rank + 1) * per, count))


def _loader(data: Sequence[Any], indices: range, batch_size: int, collate: Any, seed: int, rank: int) -> Any:
    import torch

    return torch.utils.data.DataLoader(IndexedSamples(data, indices), batch_size=batch_size, shuffle=False,
                                       collate_fn=CollateWithIds(collate, seed=seed, rank=rank))


def decode_dataset(call: HookCall, task: Any, config: Any, backbone: Any, head: Any, data: Sequence[Any],
                   stage: str, batch_size: int, accelerator: Any, label: str | None = None) -> list[dict[str, Any]]:
    """``decode`` over ``data`` on every process; returns all predictions, in order, on every process."""
    import torch
    from accelerate.utils import gather_object, send_to_device
    from tqdm.auto import tqdm

    collate = call("build_collator", task=task, config=config, backbone=backbone, stage=stage)
    indices = shard(len(data), accelerator.process_index, accelerator.num_processes)
    loader = _loader(data, indices, batch_size, collate, config.seed, accelerator.process_index)
    rows: list[dict[str, Any]] = []
    with torch.no_grad(), accelerator.autocast():
        for batch in tqdm(loader, desc=f"{label or stage} {task.name}", unit="batch", leave=label is None,
                          disable=not accelerator.is_main_process, dynamic_ncols=True):
            decoded = call("decode", task=task, config=config, backbone=backbone, head=head,
                           batch=send_to_device(batch["inputs"], accelerator.device))
            if not isinstance(decoded, list) or len(decoded) != len(batch["ids"]):
                raise TypeError(f"decode of task {task.name!r} returned {len(decoded)} predictions "
                                f"for a batch of {len(batch['ids'])}")
            rows.extend({"id": sample_id, **prediction} for sample_id, prediction in zip(batch["ids"], decoded))
    return gather_object(rows) if accelerator.num_processes > 1 else rows


def dataset_loss(call: HookCall, task: Any, config: Any, backbone: Any, head: Any, data: Sequence[Any],
                 batch_size: int, accelerator: Any, step: int) -> float:
    """Mean of the ``loss`` hook over ``data`` (weighted by batch size), across all processes."""
    import torch
    from accelerate.utils import send_to_device

    collate = call("build_collator", task=task, config=config, backbone=backbone, stage="train")
    indices = shard(len(data), accelerator.process_index, accelerator.num_processes)
    loader = _loader(data, indices, batch_size, collate, config.seed, accelerator.process_index)
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with torch.no_grad(), accelerator.autocast():
        for batch in loader:
            out = call("loss", task=task, config=config, backbone=backbone, head=head,
                       batch=send_to_device(batch["inputs"], accelerator.device), step=step,
                       max_steps=config.train.steps)
            total += torch.stack([out["loss"].detach().double() * len(batch["ids"]),
                                  torch.tensor(float(len(batch["ids"])), dtype=torch.float64,
                                               device=accelerator.device)])
    if accelerator.num_processes > 1:
        total = accelerator.reduce(total, reduction="sum")
    return float(total[0] / total[1]) if total[1] > 0 else float("nan")


def flatten_metrics(metrics: dict[str, Any], prefix: str) -> dict[str, float]:
    """Numeric leaves of a nested metrics dict as ``prefix/key/subkey``."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, name))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def scored(call: HookCall, task: Any, config: Any, predictions: list[dict[str, Any]], data: Sequence[Any],
           out_dir: Any, required: bool = True, print_table: bool = False) -> dict[str, Any] | None:
    """The task's ``evaluate`` as a JSON-ready dict; an :class:`qvl.report.EvalResult` also leaves its
    ``comparison.md`` and ``comparison.png`` in ``out_dir`` (and its table on stderr if asked, unless
    the result carries its own readable ``report``, which ``qvl run TASK eval`` prints instead)."""
    import sys

    from qvl.report import EvalResult
    from qvl.samples import info_of

    result = call("evaluate", required=required, task=task, config=config, predictions=predictions, dataset=data,
                  out_dir=out_dir, info=info_of(data))
    if not isinstance(result, EvalResult):
        return result
    result.write(out_dir)
    metrics = result.to_dict()
    if print_table and not isinstance(metrics.get("report"), str):
        print("\n" + result.table(), file=sys.stderr)
    return metrics
