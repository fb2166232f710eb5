"""What a training run writes survives kill -9 and a full disk, and a resumed or restarted run
keeps one history: ``metrics.jsonl`` and ``samples/rank-0.jsonl`` hold each step once, in order.

The task trains a linear head without any backbone, so a run takes a second; run as a script,
this file trains it in a process the test kills with SIGKILL at a chosen step.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
import torch

import qvl
from qvl.errors import OutOfSpaceError
from qvl.plugins import load_plugins
from qvl.runner.rundir import RunDir
from qvl.runner.stages import run_stage

BATCH = 2


@attrs.define
class StepsConfig:
    samples: int = 16
    stop_at_step: int = -1  # the loss hook writes ``stopped_flag`` and waits there to be killed
    stopped_flag: str = ""
    fail_at_step: int = -1  # the loss hook raises a user error (a run that dies without a kill)


class StepsTask:
    @qvl.hookimpl
    def uses_backbone(self, task, stage):
        return False if task.name == "steps" else None

    @qvl.hookimpl
    def build_dataset(self, task, config, split):
        if task.name == "steps":
            x = torch.randn(config.task.samples, 3, generator=torch.Generator().manual_seed(0))
            return [{"id": f"s{i}", "x": x[i], "y": x[i].sum()} for i in range(config.task.samples)]

    @qvl.hookimpl
    def build_head(self, task, backbone):
        if task.name == "steps":
            return torch.nn.Linear(3, 1)

    @qvl.hookimpl
    def build_collator(self, task, stage):
        if task.name == "steps":
            return lambda samples: {"x": torch.stack([s["x"] for s in samples]),
                                    "y": torch.stack([s["y"] for s in samples]),
                                    "ids": tuple(s["id"] for s in samples)}

    @qvl.hookimpl
    def loss(self, task, config, head, batch, step):
        if task.name != "steps":
            return None
        if step == config.task.stop_at_step:
            Path(config.task.stopped_flag).write_text(str(os.getpid()))
            time.sleep(600)
        if step == config.task.fail_at_step:
            raise qvl.UserError(f"failing at step {step} on purpose")
        return {"loss": torch.nn.functional.mse_loss(head(batch["x"]).squeeze(-1), batch["y"])}


TASK = qvl.Task(name="steps", config_class=StepsConfig,
                defaults={"train": {"batch_size": BATCH, "log_every": 1, "warmup_steps": 0, "num_workers": 0}})


def _host():
    host = load_plugins()
    host.pm.register(StepsTask(), name="steps-test")
    host.tasks["steps"] = attrs.evolve(TASK, plugin="steps-test")
    return host


@pytest.fixture
def host():
    return _host()


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _metric_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in _records(run_dir / "metrics.jsonl")]


def _sample_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in _records(run_dir / "samples" / "rank-0.jsonl")]


def _tensorboard_steps(run_dir: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return [event.step for event in events.Scalars("train/loss")]


def test_kill_9_keeps_every_finished_steps_samples_and_resume_continues_one_history(host, tmp_path):
    run_dir, flag = tmp_path / "run", tmp_path / "stopped"
    overrides = ["train.steps=20", "train.save_every=10", f"task.stopped_flag={str(flag)!r}"]
    process = subprocess.Popen([sys.executable, __file__, str(run_dir), *overrides, "task.stop_at_step=15"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not flag.exists():  # the run waits inside step 16's loss, 15 steps finished
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run did not reach step 15"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
        process.stderr.close()

    assert [p.name for p in RunDir(run_dir).checkpoints()] == ["step-00000010"]
    assert _metric_steps(run_dir) == list(range(1, 16))
    samples = _records(run_dir / "samples" / "rank-0.jsonl")
    assert [r["step"] for r in samples] == list(range(15))  # every finished step, none lost in a buffer
    assert all(len(r["ids"]) == BATCH for r in samples)

    # TensorBoard reads event files in the order of their names, which start with the second they
    # were opened in: a resume in the killed run's own second (only a test is that fast) could sort first
    time.sleep(1.0)
    result = run_stage(host, "steps", "train", overrides=["task.stop_at_step=-1"], run_dir=run_dir, resume=True)
    assert result.steps == 20
    # one history: steps 11-15 of the killed run are replaced by the resumed run's, not repeated
    assert _metric_steps(run_dir) == list(range(1, 21))
    resumed = _records(run_dir / "samples" / "rank-0.jsonl")
    assert [r["step"] for r in resumed] == list(range(20))
    assert resumed[:10] == samples[:10]
    assert _tensorboard_steps(run_dir) == list(range(1, 21))


def test_resume_cuts_the_history_back_to_the_checkpoint(host, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(qvl.UserError, match="failing at step 7"):
        run_stage(host, "steps", "train", overrides=["train.steps=10", "train.save_every=4", "task.fail_at_step=7"],
                  run_dir=run_dir)
    assert _metric_steps(run_dir) == list(range(1, 8)) and _sample_steps(run_dir) == list(range(7))
    run_stage(host, "steps", "train", overrides=["task.fail_at_step=-1"], run_dir=run_dir, resume=True)
    assert _metric_steps(run_dir) == list(range(1, 11))  # not 1..7, 5..10
    assert _sample_steps(run_dir) == list(range(10))


def test_a_restart_without_a_checkpoint_starts_a_new_history(host, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(qvl.UserError, match="failing at step 5"):
        run_stage(host, "steps", "train", overrides=["train.steps=8", "task.fail_at_step=5"], run_dir=run_dir)
    assert _metric_steps(run_dir) == [1, 2, 3, 4, 5]
    run_stage(host, "steps", "train", overrides=["train.steps=3"], run_dir=run_dir)
    assert _metric_steps(run_dir) == [1, 2, 3]
    assert _sample_steps(run_dir) == [0, 1, 2]


def test_a_torn_last_line_of_a_killed_write_is_dropped_on_resume(host, tmp_path):
    run_dir = tmp_path / "run"
    run_stage(host, "steps", "train", overrides=["train.steps=4", "train.save_every=2", "train.keep_checkpoints=2"],
              run_dir=run_dir)
    (run_dir / "checkpoints" / "step-00000004").rename(run_dir / "checkpoints" / ".gone")
    with (run_dir / "metrics.jsonl").open("a") as handle:
        handle.write('{"step": 3, "lo')
    run_stage(host, "steps", "train", run_dir=run_dir, resume=True)
    assert _metric_steps(run_dir) == [1, 2, 3, 4]


def test_a_checkpoint_that_fills_the_disk_is_one_line_and_keeps_the_earlier_one(host, tmp_path, monkeypatch):
    import safetensors.torch

    run_dir = tmp_path / "run"
    real_save_file = safetensors.torch.save_file
    written = []

    def save_file(tensors, filename, *args, **kwargs):
        if "step-00000004" in filename:  # the second checkpoint finds the disk full
            Path(filename).write_bytes(b"0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(filename)
        return real_save_file(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    with pytest.raises(OutOfSpaceError) as full:
        run_stage(host, "steps", "train", overrides=["train.steps=6", "train.save_every=2"], run_dir=run_dir)
    message = str(full.value)
    checkpoints = run_dir / "checkpoints"
    assert "\n" not in message and isinstance(full.value, qvl.UserError)
    assert message.startswith(f"{checkpoints / 'step-00000004'}: out of disk space writing the step checkpoint")
    assert "the size of step-00000002" in message and " free there" in message
    assert f"step-00000002 kept; free some space, then continue with --run-dir {run_dir} --resume" in message
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000002"]  # the partial one is gone
    assert written and (checkpoints / "step-00000002" / "head.safetensors").is_file()


def test_a_full_disk_under_torch_save_is_recognised_by_the_space_left(host, tmp_path, monkeypatch):
    # torch.save reports a full disk as "unexpected pos 576 vs 534": the free space tells
    import shutil

    run_dir = tmp_path / "run"
    real_save = torch.save
    disk_usage = shutil.disk_usage

    def full_disk_usage(path):
        return disk_usage(path)._replace(free=4096)

    def save(obj, f, *args, **kwargs):
        if "step-00000004" in str(f):
            monkeypatch.setattr(shutil, "disk_usage", full_disk_usage)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OutOfSpaceError, match=r"out of disk space writing the step checkpoint .*4.1 kB free there"):
        run_stage(host, "steps", "train", overrides=["train.steps=6", "train.save_every=2"], run_dir=run_dir)


if __name__ == "__main__":  # the process the kill -9 test kills: RUN_DIR OVERRIDE...
    run_stage(_host(), "steps", "train", overrides=sys.argv[2:], run_dir=Path(sys.argv[1]))
