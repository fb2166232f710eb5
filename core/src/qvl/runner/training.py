"""The training stage: accelerate-driven loop over any task's hooks."""

from __future__ import annotations

import json
import math
from typing import Any

import attrs

from qvl.config import RunConfig
from qvl.errors import UserError
from qvl.plugins import PluginHost
from qvl.runner import checkpoint as ckpt
from qvl.runner.assembly import dataset, load_parts
from qvl.runner.metrics import MetricsLog, plot_loss
from qvl.runner.modules import CollateWithIds, TaskModule, mixed_precision, parameter_groups
from qvl.runner.rundir import RunDir, eprint
from qvl.task import Task


@attrs.define
class TrainResult:
    run_dir: RunDir
    steps: int
    final_loss: float | None
    checkpoint: Any
    loss_plot: Any


def train(host: PluginHost, task: Task, config: RunConfig, run_dir: RunDir, resume: bool = False) -> TrainResult:
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_cosine_schedule_with_warmup

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
    resume_from = run_dir.last_checkpoint() if resume else None
    if resume and resume_from is None and accelerator.is_main_process:
        eprint(f"qvl: {run_dir.path} has no complete checkpoint yet; starting from step 0")
    if accelerator.is_main_process:
        run_dir.write_config(config)
    accelerator.wait_for_everyone()

    parts = load_parts(host, task, config, resume_from)
    backbone, head = parts.backbone, parts.head
    train_data = dataset(host, task, config, "train")
    global_batch = tc.batch_size * accelerator.num_processes
    if len(train_data) < global_batch:
        raise UserError(f"task {task.name!r}: the train split has {len(train_data)} samples, fewer than one "
                         f"batch of {global_batch} (train.batch_size x processes)")
    collate = host.call("build_collator", task=task, config=config, backbone=backbone, stage="train")
    loader = torch.utils.data.DataLoader(
        train_data, batch_size=tc.batch_size, shuffle=True, drop_last=True,
        collate_fn=CollateWithIds(collate), num_workers=tc.num_workers,
    )

    def compute_loss(head: Any, batch: dict[str, Any], step: int, max_steps: int) -> dict[str, Any]:
        result = host.call("loss", task=task, config=config, backbone=backbone, head=head,
                           batch=batch, step=step, max_steps=max_steps)
        if not isinstance(result, dict) or "loss" not in result:
            raise TypeError(f"the loss hook of task {task.name!r} must return a dict with a 'loss' tensor")
        return result

    module = TaskModule(backbone.model, head, compute_loss)
    groups = parameter_groups(module, tc.weight_decay)
    if not any(group["params"] for group in groups):
        raise UserError(f"nothing to train: backbone.finetune = {config.backbone.finetune!r} and task "
                         f"{task.name!r} builds no head")
    optimizer = torch.optim.AdamW(groups, lr=tc.lr)
    scheduler = get_cosine_schedule_with_warmup(optimizer, tc.warmup_steps, tc.steps)
    # The scheduler is stepped by hand, once per optimizer step: accelerate's prepared scheduler
    # steps once per process, which would make two processes decay the rate twice as fast.
    if backbone.quantized:
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
    trainable, total = backbone.trainable_parameters()
    head_params = sum(p.numel() for p in head.parameters()) if head is not None else 0
    if accelerator.is_main_process:
        eprint(f"qvl: training {task.name} on {backbone.name} ({config.backbone.finetune}): "
               f"{trainable / 1e6:.2f} M of {total / 1e6:.2f} M backbone parameters trainable"
               + (f", head {head_params / 1e6:.3f} M" if head is not None else "")
               + f"; {accelerator.num_processes} process(es) on {accelerator.device}; run dir {run_dir.path}")

    log = MetricsLog(run_dir.path, enabled=accelerator.is_main_process)
    samples_dir = run_dir.path / "samples"
    samples_dir.mkdir(parents=True, exist_ok=True)
    samples_log = (samples_dir / f"rank-{accelerator.process_index}.jsonl").open("a", encoding="utf-8")
    progress = tqdm(total=tc.steps, initial=state.step, desc=f"train {task.name}", unit="step",
                    disable=not accelerator.is_main_process, dynamic_ncols=True)
    module.train()
    if config.backbone.finetune == "frozen":
        backbone.model.eval()  # a frozen feature extractor keeps inference behaviour (dropout off)
    window: dict[str, list[float]] = {}
    last_loss: float | None = None
    last_saved = None
    try:
        while state.step < tc.steps:
            loader.set_epoch(state.epoch)
            batches = accelerator.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
            finished_epoch = True
            for batch in batches:
                with accelerator.accumulate(module):
                    out = module(batch["inputs"], step=state.step, max_steps=tc.steps)
                    loss = out["loss"]
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"loss is {loss.item()} at step {state.step}; lower train.lr?")
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and tc.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(module.parameters(), tc.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                state.batch_in_epoch += 1
                for key, value in out.items():
                    value = value.detach().float() if torch.is_tensor(value) else torch.tensor(float(value))
                    window.setdefault(key, []).append(value.to(accelerator.device))
                if any(i is not None for i in batch["ids"]):
                    samples_log.write(json.dumps({"step": state.step, "ids": batch["ids"]}) + "\n")
                if not accelerator.sync_gradients:
                    continue
                step_lr = scheduler.get_last_lr()[0]  # the rate this optimizer step used
                scheduler.step()
                state.step += 1
                progress.update(1)
                if state.step % tc.log_every == 0 or state.step == tc.steps:
                    values = {k: accelerator.reduce(torch.stack(v).mean(), reduction="mean").item()
                              for k, v in window.items()}
                    window.clear()
                    values["lr"] = step_lr
                    last_loss = values["loss"]
                    progress.set_postfix(loss=f"{last_loss:.4f}")
                    log.log(state.step, values)
                if tc.save_every and state.step % tc.save_every == 0 and state.step < tc.steps:
                    last_saved = _save(run_dir, state, accelerator, backbone, head, optimizer, scheduler, config)
                if state.step >= tc.steps:
                    finished_epoch = False
                    break
            if finished_epoch:
                state.epoch += 1
                state.batch_in_epoch = 0
        last_saved = _save(run_dir, state, accelerator, backbone, head, optimizer, scheduler, config)
    finally:
        progress.close()
        samples_log.close()
        log.close()
    plot = None
    if accelerator.is_main_process:
        plot = plot_loss(run_dir.metrics_path, run_dir.path / "loss.png", f"{task.name} on {backbone.name}")
        if last_loss is not None and not math.isnan(last_loss):
            eprint(f"qvl: finished {state.step} steps, last loss {last_loss:.4f}; checkpoint {last_saved}")
    accelerator.wait_for_everyone()
    return TrainResult(run_dir=run_dir, steps=state.step, final_loss=last_loss, checkpoint=last_saved,
                       loss_plot=plot)


def _save(run_dir: RunDir, state: ckpt.TrainerState, accelerator: Any, backbone: Any, head: Any,
          optimizer: Any, scheduler: Any, config: RunConfig) -> Any:
    return ckpt.save(run_dir.checkpoints_dir, state, accelerator=accelerator, backbone=backbone, head=head,
                     optimizer=optimizer, scheduler=scheduler, finetune=config.backbone.finetune,
                     keep=config.train.keep_checkpoints)
