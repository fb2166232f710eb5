"""The training stage: accelerate-driven training of any task through its hooks.

:func:`train` is a sequence of named steps: the accelerator and the run dir, the task's parts
(backbone, head), the train data, the prepared model and optimizer, the resumed state, then the
step loop (:mod:`qvl.runner.step_loop`: log lines, validation, checkpoints) and the closing lines.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from qvl.config import RunConfig, TrainConfig
from qvl.errors import UserError
from qvl.plugins import PluginHost
from qvl.runner import checkpoint as ckpt
from qvl.runner.assembly import Parts, checked_dataset, load_parts
from qvl.runner.metrics import plot_loss
from qvl.runner.modules import CollateWithIds, IndexedSamples, TaskModule, mixed_precision, parameter_groups
from qvl.runner.rundir import RunDir, eprint
from qvl.runner.step_loop import PreparedModel, StepLoop, TrainingDivergedError
from qvl.task import Task

__all__ = ["TrainResult", "TrainingDivergedError", "auto_workers", "resolved_steps", "train"]


@attrs.define
class TrainResult:
    run_dir: RunDir
    steps: int
    final_loss: float | None
    checkpoint: Any
    loss_plot: Any
    best: dict[str, Any] | None = None
    stopped_early: bool = False


def resolved_steps(config: RunConfig, batches_per_epoch: int) -> int:
    """``train.steps``, or the optimizer steps of ``train.epochs`` passes over the data."""
    tc = config.train
    if tc.epochs is None:
        return tc.steps
    return max(1, tc.epochs * batches_per_epoch // tc.grad_accum)


def _on_main(accelerator: Any, work: Callable[[], Any]) -> Any:
    """Run ``work`` on the main process and hand its result, or its user error, to every process."""
    result, error = None, None
    if accelerator.is_main_process:
        try:
            result = work()
        except UserError as exc:
            error = exc
    if accelerator.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        result, error = broadcast_object_list([result, error])
    if error is not None:
        raise error
    return result


def _start_run_dir(config: RunConfig, task: Task, run_dir: Path | None) -> str:
    run = RunDir(run_dir) if run_dir is not None else RunDir.new(config)
    run.claim(task.name)
    run.write_config(config)
    return str(run.path)


def train(host: PluginHost, task: Task, config: RunConfig, run_dir: Path | None, resume: bool = False) -> TrainResult:
    """Train ``task`` as ``config`` says into ``run_dir`` (a new run dir when None); with ``resume``,
    from the run's last complete checkpoint. Every process of a launch runs this together."""
    from accelerate.utils import set_seed

    accelerator = _make_accelerator(config.train)
    set_seed(config.seed)
    run, resume_from = _open_run(accelerator, task, config, run_dir, resume)
    parts = load_parts(host.call, task, config, resume_from, stage="train")
    config, loader, workers = _prepare_data(host, task, config, accelerator, parts.backbone)
    model = _build_model(host, task, config, accelerator, parts, loader)
    state = _resumed_state(resume_from, accelerator, model)
    if accelerator.is_main_process:
        _announce(task, config, accelerator, parts, workers, run)
    loop = StepLoop(host, task, config, accelerator, run, parts.backbone, model, state)
    loop.run()
    return _finish(loop)


def _make_accelerator(tc: TrainConfig) -> Any:
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs

    return Accelerator(
        mixed_precision=mixed_precision(tc.mixed_precision),
        gradient_accumulation_steps=tc.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=tc.ddp_find_unused_parameters)],
        # without a GPU, accelerate only joins the processes of a launch (over gloo) when told cpu=True
        cpu=not torch.cuda.is_available(),
    )


def _open_run(accelerator: Any, task: Task, config: RunConfig, run_dir: Path | None,
              resume: bool) -> tuple[RunDir, Path | None]:
    """The run dir, and the checkpoint to resume from (None: step 0)."""
    # one run directory for all processes: the main process names (and claims) it
    run = RunDir(Path(_on_main(accelerator, lambda: _start_run_dir(config, task, run_dir))))
    resume_from = run.last_checkpoint() if resume else None
    if resume and resume_from is None and accelerator.is_main_process:
        eprint(f"qvl: {run.path} has no complete checkpoint yet; starting from step 0")
    return run, resume_from


def _prepare_data(host: PluginHost, task: Task, config: RunConfig, accelerator: Any,
                  backbone: Any) -> tuple[RunConfig, Any, int]:
    """The config with ``train.steps`` resolved (from ``train.epochs``), the train split's loader and
    its worker count."""
    import torch

    tc = config.train
    train_data = checked_dataset(host.call, task, config, "train")
    global_batch = tc.batch_size * accelerator.num_processes
    if len(train_data) < global_batch:
        raise UserError(f"task {task.name!r}: the train split has {len(train_data)} samples, fewer than one "
                        f"batch of {global_batch} (train.batch_size x processes)")
    steps = resolved_steps(config, len(train_data) // global_batch)
    if steps != tc.steps:
        config = attrs.evolve(config, train=attrs.evolve(tc, steps=steps))
        tc = config.train
    collate = host.call("build_collator", task=task, config=config, backbone=backbone, stage="train")
    workers = auto_workers() if tc.num_workers == "auto" else tc.num_workers
    loader = torch.utils.data.DataLoader(
        IndexedSamples(train_data), batch_size=tc.batch_size, shuffle=True, drop_last=True,
        collate_fn=CollateWithIds(collate, seed=config.seed, rank=accelerator.process_index),
        num_workers=workers, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
    )
    return config, loader, workers


def _task_loss(host: PluginHost, task: Task, config: RunConfig, backbone: Any, head: Any, batch: dict[str, Any],
               step: int, max_steps: int) -> dict[str, Any]:
    result = host.call("loss", task=task, config=config, backbone=backbone, head=head,
                       batch=batch, step=step, max_steps=max_steps)
    if not isinstance(result, dict) or "loss" not in result:
        raise TypeError(f"the loss hook of task {task.name!r} must return a dict with a 'loss' tensor")
    return result


def _build_model(host: PluginHost, task: Task, config: RunConfig, accelerator: Any, parts: Parts,
                 loader: Any) -> PreparedModel:
    from transformers import get_scheduler

    from qvl.runner.compilation import adamw

    tc, backbone, head = config.train, parts.backbone, parts.head
    compute_loss = functools.partial(_task_loss, host, task, config, backbone)
    trains_backbone = backbone is not None and any(p.requires_grad for p in backbone.model.parameters())
    # A frozen backbone stays outside the module DDP wraps: nothing of it is synchronised or broadcast.
    module = TaskModule(backbone.model if trains_backbone else None, head, compute_loss)
    if backbone is not None and not trains_backbone and not backbone.quantized:
        backbone.model.to(accelerator.device)
    groups = host.call("param_groups", required=False, task=task, config=config, backbone=backbone, head=head)
    groups = _checked_groups(groups, module, task) if groups is not None else parameter_groups(module, tc.weight_decay)
    if not any(group["params"] for group in groups):
        finetune = config.backbone.finetune if backbone is not None else "not loaded"
        raise UserError(f"nothing to train: backbone.finetune = {finetune!r} and task {task.name!r} builds no head")
    if tc.compile and trains_backbone:
        from qvl.runner.compilation import compile_blocks

        compile_blocks(backbone.model, accelerator.device)
    optimizer = adamw(groups, tc.lr, tc.weight_decay, fused=tc.compile)
    warmup = round(tc.warmup_ratio * tc.steps) if tc.warmup_ratio is not None else tc.warmup_steps
    scheduler = get_scheduler(tc.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=tc.steps)
    # The scheduler is stepped by hand, once per optimizer step: accelerate's prepared scheduler
    # steps once per process, which would make two processes decay the rate twice as fast.
    if backbone is not None and backbone.quantized and trains_backbone:
        # 4-bit weights are placed by from_pretrained(device_map=...) and must not be moved again
        if head is not None:
            head.to(accelerator.device)
        module, optimizer, loader = accelerator.prepare(module, optimizer, loader, device_placement=[False, True, True])
    else:
        module, optimizer, loader = accelerator.prepare(module, optimizer, loader)
    return PreparedModel(module, optimizer, scheduler, loader, trains_backbone)


def _resumed_state(resume_from: Path | None, accelerator: Any, model: PreparedModel) -> ckpt.TrainerState:
    """Step 0's state, or the checkpoint's (the optimizer, the schedule and the RNGs restored with it)."""
    if resume_from is None:
        return ckpt.TrainerState()
    return ckpt.load_training_state(resume_from, accelerator=accelerator, optimizer=model.optimizer,
                                    scheduler=model.scheduler)


def _announce(task: Task, config: RunConfig, accelerator: Any, parts: Parts, workers: int, run: RunDir) -> None:
    backbone, head = parts.backbone, parts.head
    described = "no backbone (features)"
    if backbone is not None:
        trainable, total = backbone.trainable_parameters()
        described = (f"{backbone.name} ({config.backbone.finetune}): {trainable / 1e6:.2f} M of "
                     f"{total / 1e6:.2f} M backbone parameters trainable")
    head_params = sum(p.numel() for p in head.parameters()) if head is not None else 0
    eprint(f"qvl: training {task.name} on {described}"
           + (f", head {head_params / 1e6:.3f} M" if head is not None else "")
           + f"; {config.train.steps} steps; {accelerator.num_processes} process(es) on {accelerator.device}, "
             f"{workers} data worker(s) each; run dir {run.path}")


def _finish(loop: StepLoop) -> TrainResult:
    """The loss plot and the closing lines (main process), once every process is done."""
    tc, state, run = loop.tc, loop.state, loop.run_dir
    plot = None
    best = None if state.best_step is None else {"metric": tc.best_metric, "value": state.best_value,
                                                  "step": state.best_step}
    if loop.accelerator.is_main_process:
        name = loop.backbone.name if loop.backbone is not None else "cached features"
        plot = plot_loss(run.metrics_path, run.path / "loss.png", f"{loop.task.name} on {name}")
        if loop.trackers is not None:
            loop.trackers.log_pictures([run.path / "loss.png", *sorted((run.path / "validation").glob("*.png"))],
                                       state.step)
            loop.trackers.finish()
        if loop.stopped_early:
            eprint(f"qvl: stopped early at step {state.step}: {tc.best_metric} did not improve for "
                   f"{tc.patience} evaluations")
        if loop.last_loss is not None and not math.isnan(loop.last_loss):
            eprint(f"qvl: finished {state.step} steps, last loss {loop.last_loss:.4f}; "
                   f"checkpoint {loop.last_saved}")
        if best is not None:
            eprint(f"qvl: best {tc.best_metric} = {state.best_value:.4g} at step {state.best_step}: "
                   f"{run.checkpoints_dir / ckpt.BEST_NAME}")
    loop.accelerator.wait_for_everyone()
    return TrainResult(run_dir=run, steps=state.step, final_loss=loop.last_loss, checkpoint=loop.last_saved,
                       loss_plot=plot, best=best, stopped_early=loop.stopped_early)


def auto_workers() -> int:
    """DataLoader workers for ``train.num_workers = "auto"``: two cores stay with the step.

    Measured on 2 cores (benchmarks/bench_data_path.py, grasp defaults, prepared cache): 74 ms a
    step with no worker, 78 with one and 80 with two; a worker cuts the data wait from 12 to 2 ms
    but slows the forward pass it competes with for the cores by more.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores - 2))


def _checked_groups(groups: list[dict[str, Any]], module: Any, task: Task) -> list[dict[str, Any]]:
    """A task's parameter groups must hold every trainable parameter exactly once."""
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    seen: list[int] = [id(p) for group in groups for p in group["params"]]
    if len(seen) != len(set(seen)) or set(seen) != trainable:
        missing = len(trainable - set(seen))
        raise ValueError(f"the param_groups hook of task {task.name!r} must list every trainable parameter "
                         f"exactly once ({missing} missing, {len(seen) - len(set(seen))} repeated)")
    return [dict(group, params=list(group["params"])) for group in groups]
