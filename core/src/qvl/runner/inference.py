"""The eval and predict stages: load a run's last checkpoint, decode a split, score or save."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs

from qvl.config import RunConfig
from qvl.errors import UserError
from qvl.plugins import PluginHost
from qvl.runner.assembly import dataset, load_parts
from qvl.runner.modules import CollateWithIds, mixed_precision
from qvl.runner.rundir import RunDir, eprint
from qvl.task import Task


@attrs.define
class InferenceResult:
    out_dir: Path
    predictions: list[dict[str, Any]]
    metrics: dict[str, Any] | None = None


def _decode_all(host: PluginHost, task: Task, config: RunConfig, run_dir: RunDir, stage: str,
                split: str, batch_size: int, limit: int | None) -> tuple[list[dict], Any, Any]:
    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    checkpoint = run_dir.last_checkpoint()
    if checkpoint is None:
        raise UserError(f"{run_dir.path}: no complete checkpoint; run 'qvl run {task.name} train' first")
    accelerator = Accelerator(mixed_precision=mixed_precision(config.train.mixed_precision),
                              cpu=not torch.cuda.is_available())
    parts = load_parts(host, task, config, checkpoint)
    backbone, head = parts.backbone, parts.head
    if not backbone.quantized:
        backbone.model.to(accelerator.device)
    if head is not None:
        head.to(accelerator.device)
        head.eval()
    backbone.model.eval()
    data = dataset(host, task, config, split, limit)
    collate = host.call("build_collator", task=task, config=config, backbone=backbone, stage=stage)
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False,
                                         collate_fn=CollateWithIds(collate))
    loader = accelerator.prepare(loader)
    predictions: list[dict[str, Any]] = []
    with torch.no_grad(), accelerator.autocast():
        for batch in tqdm(loader, desc=f"{stage} {task.name}", unit="batch",
                          disable=not accelerator.is_main_process, dynamic_ncols=True):
            decoded = host.call("decode", task=task, config=config, backbone=backbone, head=head,
                                batch=batch["inputs"])
            if len(decoded) != len(batch["ids"]):
                raise ValueError(f"decode of task {task.name!r} returned {len(decoded)} predictions "
                                 f"for a batch of {len(batch['ids'])}")
            rows = [{"id": sample_id, **prediction} for sample_id, prediction in zip(batch["ids"], decoded)]
            predictions.extend(accelerator.gather_for_metrics(rows, use_gather_object=True))
    return predictions, data, accelerator


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    tmp.replace(path)


def evaluate(host: PluginHost, task: Task, config: RunConfig, run_dir: RunDir) -> InferenceResult:
    ec = config.eval
    predictions, data, accelerator = _decode_all(host, task, config, run_dir, "eval", ec.split,
                                                 ec.batch_size, ec.max_samples)
    out_dir = run_dir.path / "eval" / ec.split
    metrics = None
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics = host.call("evaluate", task=task, config=config, predictions=predictions, dataset=data,
                            out_dir=out_dir)
        _write_jsonl(out_dir / "predictions.jsonl", predictions)
        tmp = out_dir / "eval.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=2))
        tmp.replace(out_dir / "eval.json")
    accelerator.wait_for_everyone()
    return InferenceResult(out_dir=out_dir, predictions=predictions, metrics=metrics)


def predict(host: PluginHost, task: Task, config: RunConfig, run_dir: RunDir) -> InferenceResult:
    pc = config.predict
    predictions, data, accelerator = _decode_all(host, task, config, run_dir, "predict", "predict",
                                              pc.batch_size, pc.max_samples)
    out_dir = run_dir.path / "predict" / time.strftime("%Y%m%d-%H%M%S")
    summary = None
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_jsonl(out_dir / "predictions.jsonl", predictions)
        eprint(f"qvl: {len(predictions)} predictions written to {out_dir / 'predictions.jsonl'}")
        summary = host.call("report_predictions", required=False, task=task, config=config,
                            predictions=predictions, dataset=data, out_dir=out_dir)
        if summary is not None:
            tmp = out_dir / "summary.json.tmp"
            tmp.write_text(json.dumps(summary, indent=2))
            tmp.replace(out_dir / "summary.json")
    accelerator.wait_for_everyone()
    return InferenceResult(out_dir=out_dir, predictions=predictions, metrics=summary)


def format_metrics(metrics: dict[str, Any], indent: str = "") -> str:
    """A plain two-column table of (nested) metrics for the terminal."""
    lines = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:")
            lines.append(format_metrics(value, indent + "  "))
        elif isinstance(value, float):
            lines.append(f"{indent}{key:<28} {value:.4f}")
        else:
            lines.append(f"{indent}{key:<28} {value}")
    return "\n".join(lines)
