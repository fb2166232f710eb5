"""The eval and predict stages: load a run's checkpoint, decode a split, score or save."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import attrs

from qvl.config import RunConfig
from qvl.data import write_json, write_jsonl
from qvl.errors import UserError
from qvl.plugins import PluginHost
from qvl.runner.assembly import checked_dataset, load_parts
from qvl.runner.evaluation import decode_dataset, scored
from qvl.runner.modules import mixed_precision
from qvl.runner.rundir import RunDir, eprint
from qvl.samples import info_of
from qvl.task import Task


@attrs.define
class InferenceResult:
    out_dir: Path
    predictions: list[dict[str, Any]]
    metrics: dict[str, Any] | None = None
    checkpoint: Path | None = None


def _decode_all(host: PluginHost, task: Task, config: RunConfig, run_dir: RunDir, stage: str, split: str,
                batch_size: int, limit: int | None, which: str | None) -> tuple[list[dict], Any, Any, Path]:
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    checkpoint = run_dir.checkpoint(which)
    if checkpoint is None:
        raise UserError(f"{run_dir.path}: no complete checkpoint; run 'qvl run {task.name} train' first")
    accelerator = Accelerator(mixed_precision=mixed_precision(config.train.mixed_precision),
                              cpu=not torch.cuda.is_available())
    set_seed(config.seed)  # sampling decoders and test-time augmentation give the same answers every time
    parts = load_parts(host.call, task, config, checkpoint, stage=stage)
    backbone, head = parts.backbone, parts.head
    if backbone is not None:
        if not backbone.quantized:
            backbone.model.to(accelerator.device)
        backbone.model.eval()
    if head is not None:
        head.to(accelerator.device)
        head.eval()
    data = checked_dataset(host.call, task, config, split, limit)
    if accelerator.is_main_process:
        eprint(f"qvl: {stage} with {checkpoint}")
    predictions = decode_dataset(host.call, task, config, backbone, head, data, stage, batch_size, accelerator)
    return predictions, data, accelerator, checkpoint


def evaluate(host: PluginHost, task: Task, config: RunConfig, run_dir: RunDir,
             checkpoint: str | None = None) -> InferenceResult:
    ec = config.eval
    predictions, data, accelerator, used = _decode_all(host, task, config, run_dir, "eval", ec.split,
                                                       ec.batch_size, ec.max_samples, checkpoint)
    out_dir = run_dir.path / "eval" / ec.split
    metrics = None
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics = scored(host.call, task, config, predictions, data, out_dir, print_table=True)
        metrics = {**metrics, "checkpoint": used.name}
        write_jsonl(out_dir / "predictions.jsonl", predictions)
        write_json(out_dir / "eval.json", metrics, indent=2)
    accelerator.wait_for_everyone()
    return InferenceResult(out_dir=out_dir, predictions=predictions, metrics=metrics, checkpoint=used)


def predict(host: PluginHost, task: Task, config: RunConfig, run_dir: RunDir,
            checkpoint: str | None = None) -> InferenceResult:
    pc = config.predict
    predictions, data, accelerator, used = _decode_all(host, task, config, run_dir, "predict", "predict",
                                                       pc.batch_size, pc.max_samples, checkpoint)
    out_dir = run_dir.path / "predict" / time.strftime("%Y%m%d-%H%M%S")
    summary = None
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_jsonl(out_dir / "predictions.jsonl", predictions)
        eprint(f"qvl: {len(predictions)} predictions written to {out_dir / 'predictions.jsonl'}")
        summary = host.call("report_predictions", required=False, task=task, config=config,
                            predictions=predictions, dataset=data, out_dir=out_dir, info=info_of(data))
        if summary is not None:
            write_json(out_dir / "summary.json", summary, indent=2)
    accelerator.wait_for_everyone()
    return InferenceResult(out_dir=out_dir, predictions=predictions, metrics=summary, checkpoint=used)


def format_metrics(metrics: dict[str, Any], indent: str = "") -> str:
    """A plain two-column table of (nested) metrics for the terminal, or the task's own ``report``."""
    if isinstance(metrics.get("report"), str):
        return metrics["report"]
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
