"""The training stage: accelerate-driven loop over any task's hooks."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from qvl.config import RunConfig
from qvl.errors import UserError
from qvl.plugins import PluginHost
from qvl.runner import checkpoint as ckpt
from qvl.runner.assembly import checked_dataset, load_parts
from qvl.runner.metrics import MetricsLog, SamplesLog, plot_loss
from qvl.runner.modules import CollateWithIds, IndexedSamples, TaskModule, mixed_precision, parameter_groups
from qvl.runner.rundir import RunDir, eprint
from qvl.task import Task

LOWER_IS_BETTER = ("loss", "error", "err", "invalid", "mae", "rmse")


class TrainingDivergedError(UserError):
    """The loss became NaN or infinite; the last complete checkpoint is kept."""


@attrs.define
class TrainResult:
    run_dir: RunDir
    steps: int
    final_loss: float | None
    checkpoint: Any
    loss_plot: Any
    best: dict[str, Any] | None = None
    stopped_early: bool = False


def better(metric: str, mode: str, value: float, best: float | None) -> bool:
    """Whether ``value`` of ``metric`` beats ``best`` (``mode`` auto: lower for losses and errors)."""
    if best is None:
        return not math.isnan(value)
    if mode == "auto":
        mode = "min" if any(word in metric.lower() for word in LOWER_IS_BETTER) else "max"
    return value < best if mode == "min" else value > best


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
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import gather_object, set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    tc = config.train
    accelerator = Accelerator(
        mixed_precision=mixed_precision(tc.mixed_precision),
        gradient_accumulation_steps=tc.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=tc.ddp_find_unused_parameters)],
        # without a GPU, accelerate only joins the processes of a launch (over gloo) when told cpu=True
        cpu=not torch.cuda.is_available(),
    )
    set_seed(config.seed)
    # one run directory for all processes: the main process names (and claims) it
    run = RunDir(Path(_on_main(accelerator, lambda: _start_run_dir(config, task, run_dir))))
    resume_from = run.last_checkpoint() if resume else None
    if resume and resume_from is None and accelerator.is_main_process:
        eprint(f"qvl: {run.path} has no complete checkpoint yet; starting from step 0")

    parts = load_parts(host.call, task, config, resume_from, stage="train")
    backbone, head = parts.backbone, parts.head
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

    def compute_loss(head: Any, batch: dict[str, Any], step: int, max_steps: int) -> dict[str, Any]:
        result = host.call("loss", task=task, config=config, backbone=backbone, head=head,
                           batch=batch, step=step, max_steps=max_steps)
        if not isinstance(result, dict) or "loss" not in result:
            raise TypeError(f"the loss hook of task {task.name!r} must return a dict with a 'loss' tensor")
        return result

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
    optimizer = torch.optim.AdamW(groups, lr=tc.lr, weight_decay=tc.weight_decay)
    warmup = round(tc.warmup_ratio * steps) if tc.warmup_ratio is not None else tc.warmup_steps
    scheduler = get_scheduler(tc.scheduler, optimizer, num_warmup_steps=warmup, num_training_steps=steps)
    # The scheduler is stepped by hand, once per optimizer step: accelerate's prepared scheduler
    # steps once per process, which would make two processes decay the rate twice as fast.
    if backbone is not None and backbone.quantized and trains_backbone:
        # 4-bit weights are placed by from_pretrained(device_map=...) and must not be moved again
        if head is not None:
            head.to(accelerator.device)
        module, optimizer, loader = accelerator.prepare(module, optimizer, loader, device_placement=[False, True, True])
    else:
        module, optimizer, loader = accelerator.prepare(module, optimizer, loader)

    state = ckpt.TrainerState()
    if resume_from is not None:
        state = ckpt.load_training_state(resume_from, accelerator=accelerator, optimizer=optimizer,
                                         scheduler=scheduler)
    if accelerator.is_main_process:
        described = "no backbone (features)"
        if backbone is not None:
            trainable, total = backbone.trainable_parameters()
            described = (f"{backbone.name} ({config.backbone.finetune}): {trainable / 1e6:.2f} M of "
                         f"{total / 1e6:.2f} M backbone parameters trainable")
        head_params = sum(p.numel() for p in head.parameters()) if head is not None else 0
        eprint(f"qvl: training {task.name} on {described}"
               + (f", head {head_params / 1e6:.3f} M" if head is not None else "")
               + f"; {steps} steps; {accelerator.num_processes} process(es) on {accelerator.device}, "
                 f"{workers} data worker(s) each; run dir {run.path}")

    # one history: what a killed attempt logged after the step this run starts from is cut off
    log = MetricsLog(run.path, enabled=accelerator.is_main_process, start_step=state.step)
    samples_log = SamplesLog(run.path / "samples" / f"rank-{accelerator.process_index}.jsonl", start_step=state.step)
    progress = tqdm(total=steps, initial=state.step, desc=f"train {task.name}", unit="step",
                    disable=not accelerator.is_main_process, dynamic_ncols=True)
    postfix: dict[str, str] = {}

    def set_modes() -> None:
        module.train()
        if backbone is not None and (config.backbone.finetune == "frozen" or not trains_backbone):
            backbone.model.eval()  # a frozen feature extractor keeps inference behaviour (dropout off)

    def save(name: str | None = None) -> Path:
        return ckpt.save(run.checkpoints_dir, state, accelerator=accelerator, backbone=backbone,
                         head=accelerator.unwrap_model(module).head, optimizer=optimizer, scheduler=scheduler,
                         finetune=config.backbone.finetune, keep=tc.keep_checkpoints, name=name)

    def validate() -> bool:
        """Validate, log, keep the best checkpoint; returns whether to stop early."""
        module.eval()
        with torch.no_grad(), accelerator.autocast():
            results = host.call("validate", task=task, config=config, backbone=backbone,
                                head=accelerator.unwrap_model(module).head, step=state.step,
                                accelerator=accelerator, out_dir=run.path / "validation")
        set_modes()
        log.log(state.step, results)
        if tc.best_metric not in results:
            raise UserError(f"train.best_metric = {tc.best_metric!r}: validation gave "
                            f"{', '.join(sorted(results)) or 'nothing'}")
        value = float(results[tc.best_metric])
        postfix[tc.best_metric] = f"{value:.4g}"
        progress.set_postfix(postfix)
        if better(tc.best_metric, tc.best_mode, value, state.best_value):
            state.best_value, state.best_step, state.evals_since_best = value, state.step, 0
            save(ckpt.BEST_NAME)
            return False
        state.evals_since_best += 1
        return bool(tc.patience) and state.evals_since_best >= tc.patience

    set_modes()
    window: dict[str, list[Any]] = {}
    waits: list[float] = []  # seconds each batch was waited for, since the last log line
    step_marks: list[int] = []
    phases = {"forward_s": 0.0, "backward_s": 0.0, "optimizer_s": 0.0}  # per optimizer step, logged
    window_started = time.perf_counter()
    last_loss: float | None = None
    last_saved = None
    stopped_early = checked_keys = False
    try:
        while state.step < steps and not stopped_early:
            loader.set_epoch(state.epoch)
            batches = accelerator.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
            finished_epoch = True
            for batch in timed(batches, waits):
                with accelerator.accumulate(module):
                    started = time.perf_counter()
                    out = module(batch["inputs"], step=state.step, max_steps=steps)
                    if not checked_keys:
                        _check_same_keys(out, accelerator, gather_object, task)
                        checked_keys = True
                    _check_finite(out["loss"], accelerator, state.step)  # waits for the forward pass
                    forward_done = time.perf_counter()
                    accelerator.backward(out["loss"])
                    backward_done = time.perf_counter()
                    if accelerator.sync_gradients and tc.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(module.parameters(), tc.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                    # on a GPU, backward and optimizer times are queueing times until the next sync
                    phases["forward_s"] += forward_done - started
                    phases["backward_s"] += backward_done - forward_done
                    phases["optimizer_s"] += time.perf_counter() - backward_done
                state.batch_in_epoch += 1
                for key, value in out.items():
                    value = value.detach().float() if torch.is_tensor(value) else torch.tensor(float(value))
                    window.setdefault(key, []).append(value.to(accelerator.device))
                if any(i is not None for i in batch["ids"]):
                    samples_log.write({"step": state.step, "ids": batch["ids"]})
                if not accelerator.sync_gradients:
                    continue
                step_lr = scheduler.get_last_lr()[0]  # the rate this optimizer step used
                scheduler.step()
                state.step += 1
                step_marks.append(state.step)
                progress.update(1)
                if state.step % tc.log_every == 0 or state.step == steps:
                    values = {k: accelerator.reduce(torch.stack(v).mean(), reduction="mean").item()
                              for k, v in window.items()}
                    window.clear()
                    values["lr"] = step_lr
                    now = time.perf_counter()
                    values["step_s"] = (now - window_started) / max(1, len(step_marks))
                    values["data_wait_s"] = sum(waits) / max(1, len(step_marks))  # per optimizer step
                    values.update({k: v / max(1, len(step_marks)) for k, v in phases.items()})
                    window_started, step_marks[:], waits[:] = now, [], []
                    phases.update(dict.fromkeys(phases, 0.0))
                    last_loss = values["loss"]
                    postfix["loss"] = f"{last_loss:.4f}"
                    postfix["data wait"] = f"{values['data_wait_s'] / max(values['step_s'], 1e-9):.0%}"
                    progress.set_postfix(postfix)
                    log.log(state.step, values)
                if tc.eval_every and (state.step % tc.eval_every == 0 or state.step == steps):
                    stopped_early = validate()
                if tc.save_every and state.step % tc.save_every == 0 and state.step < steps and not stopped_early:
                    last_saved = save()
                if state.step >= steps or stopped_early:
                    finished_epoch = False
                    break
            if finished_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
        last_saved = save()
    finally:
        progress.close()
        samples_log.close()
        log.close()
    plot = None
    best = None if state.best_step is None else {"metric": tc.best_metric, "value": state.best_value,
                                                  "step": state.best_step}
    if accelerator.is_main_process:
        name = backbone.name if backbone is not None else "cached features"
        plot = plot_loss(run.metrics_path, run.path / "loss.png", f"{task.name} on {name}")
        if stopped_early:
            eprint(f"qvl: stopped early at step {state.step}: {tc.best_metric} did not improve for "
                   f"{tc.patience} evaluations")
        if last_loss is not None and not math.isnan(last_loss):
            eprint(f"qvl: finished {state.step} steps, last loss {last_loss:.4f}; checkpoint {last_saved}")
        if best is not None:
            eprint(f"qvl: best {tc.best_metric} = {state.best_value:.4g} at step {state.best_step}: "
                   f"{run.checkpoints_dir / ckpt.BEST_NAME}")
    accelerator.wait_for_everyone()
    return TrainResult(run_dir=run, steps=state.step, final_loss=last_loss, checkpoint=last_saved,
                       loss_plot=plot, best=best, stopped_early=stopped_early)


def timed(batches: Iterable[Any], waits: list[float]) -> Iterator[Any]:
    """Yield the batches, appending to ``waits`` how long each one was waited for."""
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        waits.append(time.perf_counter() - started)
        yield batch


def auto_workers() -> int:
    """DataLoader workers for ``train.num_workers = "auto"``: two cores stay with the step.

    Measured on 2 cores (benchmarks/bench_data_path.py, grasp defaults, prepared cache): 74 ms a
    step with no worker, 78 with one and 80 with two; a worker cuts the data wait from 12 to 2 ms
    but slows the forward pass it competes with for the cores by more.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores - 2))


def _check_finite(loss: Any, accelerator: Any, step: int) -> None:
    """Stop every process together when any of them sees a NaN or infinite loss."""
    import torch

    bad = torch.tensor([0.0 if torch.isfinite(loss.detach()).all() else 1.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    if bad.item() > 0:
        where = f" on {int(bad.item())} of {accelerator.num_processes} processes" if accelerator.num_processes > 1 \
            else f" ({loss.item()})"
        raise TrainingDivergedError(f"the loss is not finite{where} at step {step}; the last complete "
                                    "checkpoint is kept; lower train.lr or check the data?")


def _check_same_keys(out: dict[str, Any], accelerator: Any, gather_object: Any, task: Task) -> None:
    """Every process must log the same loss terms, or averaging them across processes would hang."""
    if accelerator.num_processes == 1:
        return
    everyone = gather_object([sorted(out)])
    if any(keys != everyone[0] for keys in everyone):
        raise ValueError(f"the loss hook of task {task.name!r} returned different keys on different "
                         f"processes: {everyone}; return the same keys on every process")


def _checked_groups(groups: list[dict[str, Any]], module: Any, task: Task) -> list[dict[str, Any]]:
    """A task's parameter groups must hold every trainable parameter exactly once."""
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    seen: list[int] = [id(p) for group in groups for p in group["params"]]
    if len(seen) != len(set(seen)) or set(seen) != trainable:
        missing = len(trainable - set(seen))
        raise ValueError(f"the param_groups hook of task {task.name!r} must list every trainable parameter "
                         f"exactly once ({missing} missing, {len(seen) - len(set(seen))} repeated)")
    return [dict(group, params=list(group["params"])) for group in groups]
