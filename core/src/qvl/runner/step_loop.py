"""The step loop of the training stage: micro-batches through accelerate, a metrics line every
``train.log_every`` steps, validation and the best checkpoint every ``train.eval_every``, a
checkpoint every ``train.save_every`` and at the end; a non-finite loss stops every process."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs

from qvl.config import RunConfig
from qvl.errors import UserError
from qvl.plugins import PluginHost
from qvl.runner import checkpoint as ckpt
from qvl.runner.metrics import MetricsLog, SamplesLog
from qvl.runner.rundir import RunDir
from qvl.task import Task

LOWER_IS_BETTER = ("loss", "error", "err", "invalid", "mae", "rmse")


class TrainingDivergedError(UserError):
    """The loss became NaN or infinite; the last complete checkpoint is kept."""


def better(metric: str, mode: str, value: float, best: float | None) -> bool:
    """Whether ``value`` of ``metric`` beats ``best`` (``mode`` auto: lower for losses and errors)."""
    if best is None:
        return not math.isnan(value)
    if mode == "auto":
        mode = "min" if any(word in metric.lower() for word in LOWER_IS_BETTER) else "max"
    return value < best if mode == "min" else value > best


@attrs.define
class PreparedModel:
    """What trains, prepared by accelerate: the module (DDP-wrapped across processes), its optimizer,
    the learning-rate schedule, and the loader."""

    module: Any
    optimizer: Any
    scheduler: Any
    loader: Any
    trains_backbone: bool


class StepLoop:
    """The optimizer steps of a run: micro-batches, metrics lines, validation, checkpoints."""

    def __init__(self, host: PluginHost, task: Task, config: RunConfig, accelerator: Any, run: RunDir,
                 backbone: Any, model: PreparedModel, state: ckpt.TrainerState) -> None:
        from tqdm.auto import tqdm

        self.host, self.task, self.config, self.tc = host, task, config, config.train
        self.accelerator, self.run_dir, self.backbone, self.model, self.state = accelerator, run, backbone, model, state
        # one history: what a killed attempt logged after the step this run starts from is cut off
        self.trackers = None
        if accelerator.is_main_process and set(self.tc.report_to) - {"tensorboard", "none"}:
            from qvl.config import to_dict
            from qvl.runner.trackers import Trackers, flat_settings

            self.trackers = Trackers(self.tc.report_to, run.path, task.name, flat_settings(to_dict(config)),
                                     resume=state.step > 0)
        self.log = MetricsLog(run.path, enabled=accelerator.is_main_process, start_step=state.step,
                              tensorboard="tensorboard" in self.tc.report_to, trackers=self.trackers)
        self.samples_log = SamplesLog(run.path / "samples" / f"rank-{accelerator.process_index}.jsonl",
                                      start_step=state.step)
        self.progress = tqdm(total=self.tc.steps, initial=state.step, desc=f"train {task.name}", unit="step",
                             disable=not accelerator.is_main_process, dynamic_ncols=True)
        self.postfix: dict[str, str] = {}
        self.window: dict[str, list[Any]] = {}
        self.waits: list[float] = []  # seconds each batch was waited for, since the last log line
        self.step_marks: list[int] = []
        self.phases = {"forward_s": 0.0, "backward_s": 0.0, "optimizer_s": 0.0}  # per optimizer step, logged
        self.window_started = 0.0
        self.last_loss: float | None = None
        self.last_saved: Path | None = None
        self.stopped_early = self.checked_keys = False

    def run(self) -> None:
        """Steps until ``train.steps`` (or early stopping), then the last checkpoint."""
        self.set_modes()
        self.window_started = time.perf_counter()
        try:
            while self.state.step < self.tc.steps and not self.stopped_early:
                self.epoch()
            self.last_saved = self.save()
        except BaseException:
            if self.trackers is not None:
                self.trackers.finish()
            raise
        finally:
            self.progress.close()
            self.samples_log.close()
            self.log.close()

    def epoch(self) -> None:
        """One pass over the loader (its rest, resumed mid-epoch), or up to the last step."""
        state, loader = self.state, self.model.loader
        loader.set_epoch(state.epoch)
        batches = self.accelerator.skip_first_batches(loader, state.batch_in_epoch) if state.batch_in_epoch else loader
        for batch in timed(batches, self.waits):
            out = self.train_on(batch)
            self.record(batch, out)
            if not self.accelerator.sync_gradients:
                continue
            self.end_step()
            if state.step >= self.tc.steps or self.stopped_early:
                return
        state.epoch += 1
        state.batch_in_epoch = 0

    def train_on(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Forward and backward of one micro-batch, and the optimizer when gradients sync; timed by phase."""
        accelerator, module, optimizer = self.accelerator, self.model.module, self.model.optimizer
        with accelerator.accumulate(module):
            started = time.perf_counter()
            out = module(batch["inputs"], step=self.state.step, max_steps=self.tc.steps)
            if not self.checked_keys:
                from accelerate.utils import gather_object

                _check_same_keys(out, accelerator, gather_object, self.task)
                self.checked_keys = True
            _check_finite(out["loss"], accelerator, self.state.step)  # waits for the forward pass
            forward_done = time.perf_counter()
            accelerator.backward(out["loss"])
            backward_done = time.perf_counter()
            if accelerator.sync_gradients and self.tc.max_grad_norm > 0:
                accelerator.clip_grad_norm_(module.parameters(), self.tc.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            # on a GPU, backward and optimizer times are queueing times until the next sync
            self.phases["forward_s"] += forward_done - started
            self.phases["backward_s"] += backward_done - forward_done
            self.phases["optimizer_s"] += time.perf_counter() - backward_done
        return out

    def record(self, batch: dict[str, Any], out: dict[str, Any]) -> None:
        """Keep the micro-batch's loss terms for the next log line, and which samples it held."""
        import torch

        self.state.batch_in_epoch += 1
        for key, value in out.items():
            value = value.detach().float() if torch.is_tensor(value) else torch.tensor(float(value))
            self.window.setdefault(key, []).append(value.to(self.accelerator.device))
        if any(i is not None for i in batch["ids"]):
            self.samples_log.write({"step": self.state.step, "ids": batch["ids"]})

    def end_step(self) -> None:
        """After an optimizer step: the schedule, the count, and when due a log line, validation, a checkpoint."""
        tc, state = self.tc, self.state
        step_lr = self.model.scheduler.get_last_lr()[0]  # the rate this optimizer step used
        self.model.scheduler.step()
        state.step += 1
        self.step_marks.append(state.step)
        self.progress.update(1)
        if state.step % tc.log_every == 0 or state.step == tc.steps:
            self.log_window(step_lr)
        if tc.eval_every and (state.step % tc.eval_every == 0 or state.step == tc.steps):
            self.stopped_early = self.validate()
        if tc.save_every and state.step % tc.save_every == 0 and state.step < tc.steps and not self.stopped_early:
            self.last_saved = self.save()

    def log_window(self, step_lr: float) -> None:
        """One metrics line: the loss terms averaged over the steps since the last one and every process."""
        import torch

        accelerator, marks = self.accelerator, self.step_marks
        values = {k: accelerator.reduce(torch.stack(v).mean(), reduction="mean").item()
                  for k, v in self.window.items()}
        self.window.clear()
        values["lr"] = step_lr
        now = time.perf_counter()
        values["step_s"] = (now - self.window_started) / max(1, len(marks))
        values["data_wait_s"] = sum(self.waits) / max(1, len(marks))  # per optimizer step
        values.update({k: v / max(1, len(marks)) for k, v in self.phases.items()})
        self.window_started, marks[:], self.waits[:] = now, [], []
        self.phases.update(dict.fromkeys(self.phases, 0.0))
        self.last_loss = values["loss"]
        self.postfix["loss"] = f"{self.last_loss:.4f}"
        self.postfix["data wait"] = f"{values['data_wait_s'] / max(values['step_s'], 1e-9):.0%}"
        self.progress.set_postfix(self.postfix)
        self.log.log(self.state.step, values)

    def set_modes(self) -> None:
        self.model.module.train()
        if self.backbone is not None and (self.config.backbone.finetune == "frozen" or not self.model.trains_backbone):
            self.backbone.model.eval()  # a frozen feature extractor keeps inference behaviour (dropout off)

    def save(self, name: str | None = None) -> Path:
        accelerator, model = self.accelerator, self.model
        return ckpt.save(self.run_dir.checkpoints_dir, self.state, accelerator=accelerator, backbone=self.backbone,
                         head=accelerator.unwrap_model(model.module).head, optimizer=model.optimizer,
                         scheduler=model.scheduler, finetune=self.config.backbone.finetune,
                         keep=self.tc.keep_checkpoints, name=name)

    def validate(self) -> bool:
        """Validate, log, keep the best checkpoint; returns whether to stop early."""
        import torch

        tc, state, accelerator = self.tc, self.state, self.accelerator
        self.model.module.eval()
        with torch.no_grad(), accelerator.autocast():
            results = self.host.call("validate", task=self.task, config=self.config, backbone=self.backbone,
                                     head=accelerator.unwrap_model(self.model.module).head, step=state.step,
                                     accelerator=accelerator, out_dir=self.run_dir.path / "validation")
        self.set_modes()
        self.log.log(state.step, results)
        if tc.best_metric not in results:
            raise UserError(f"train.best_metric = {tc.best_metric!r}: validation gave "
                            f"{', '.join(sorted(results)) or 'nothing'}")
        value = float(results[tc.best_metric])
        self.postfix[tc.best_metric] = f"{value:.4g}"
        self.progress.set_postfix(self.postfix)
        if better(tc.best_metric, tc.best_mode, value, state.best_value):
            state.best_value, state.best_step, state.evals_since_best = value, state.step, 0
            self.save(ckpt.BEST_NAME)
            return False
        state.evals_since_best += 1
        return bool(tc.patience) and state.evals_since_best >= tc.patience


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
