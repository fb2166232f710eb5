"""The training loop's options, on a task that trains a head on vectors without any backbone.

No backbone means each test runs in a fraction of a second, so validation, best checkpoints,
early stopping, schedules, epochs, parameter groups, divergence and run-directory rules are tested
on real runs of the runner.
"""

import json
import os
import shutil
import time

import attrs
import pytest
import torch
from safetensors.torch import load_file

import qvl
from qvl.config import positive
from qvl.plugins import load_plugins
from qvl.runner.rundir import RunDir
from qvl.runner.stages import run_stage
from qvl.runner.training import TrainingDivergedError


@attrs.define
class VectorsConfig:
    samples: int = attrs.field(default=32, validator=positive)
    nan_at_step: int = -1
    diverge_on: str = "loss"


def _data(n: int, split: str) -> list[dict]:
    generator = torch.Generator().manual_seed(0 if split == "train" else 1)
    x = torch.randn(n, 4, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.25
    return [{"id": f"{split}-{i}", "x": x[i], "y": y[i]} for i in range(n)]


class Vectors:
    """A complete task of a linear head on 4-vectors; records which backbone stages were asked for."""

    def __init__(self):
        self.backbone_stages = []
        self.collate_rngs = []
        self.groups = None

    @qvl.hookimpl
    def uses_backbone(self, task, stage):
        return False if task.name == "vectors" else None

    @qvl.hookimpl(tryfirst=True)
    def load_backbone(self, task, stage):
        if task.name == "vectors":
            self.backbone_stages.append(stage)
        return None

    @qvl.hookimpl
    def build_dataset(self, task, config, split):
        if task.name == "vectors":
            return _data(config.task.samples if split == "train" else 8, split)

    @qvl.hookimpl
    def build_head(self, task, backbone):
        if task.name == "vectors":
            assert backbone is None
            return torch.nn.Linear(4, 1).to(torch.bfloat16)  # the runner trains heads in fp32

    @qvl.hookimpl
    def build_collator(self, task, stage):
        if task.name != "vectors":
            return None

        def collate(samples, rng):
            # the draw rides in the batch: with DataLoader workers, collation runs in other processes
            return {"x": torch.stack([s["x"] for s in samples]), "y": torch.stack([s["y"] for s in samples]),
                    "ids": tuple(s["id"] for s in samples), "draw": float(rng.random())}

        return collate

    @qvl.hookimpl
    def param_groups(self, task, head):
        if task.name == "vectors" and self.groups is not None:
            return self.groups(head)

    @qvl.hookimpl
    def loss(self, task, config, head, batch, step):
        if task.name != "vectors":
            return None
        assert head.weight.dtype == torch.float32
        self.collate_rngs.append((batch["ids"], batch["draw"]))
        loss = torch.nn.functional.mse_loss(head(batch["x"]).squeeze(-1), batch["y"])
        if step == config.task.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss}

    @qvl.hookimpl
    def decode(self, task, head, batch):
        if task.name == "vectors":  # "noise" stands for a sampling decoder or test-time augmentation
            return [{"y": float(v), "noise": float(torch.rand(()))} for v in head(batch["x"]).squeeze(-1)]

    @qvl.hookimpl
    def evaluate(self, task, predictions, dataset):
        if task.name == "vectors":
            errors = [abs(p["y"] - float(s["y"])) for p, s in zip(predictions, dataset)]
            return {"mae": sum(errors) / len(errors), "samples": len(errors), "nested": {"worst": max(errors)}}


TASK = qvl.Task(name="vectors", config_class=VectorsConfig,
                defaults={"train": {"batch_size": 4, "log_every": 1, "warmup_steps": 0, "lr": 0.05}})
QUICK = ("train.steps=6",)


@pytest.fixture
def vectors():
    host = load_plugins()
    plugin = Vectors()
    host.pm.register(plugin, name="vectors-test")
    host.tasks["vectors"] = attrs.evolve(TASK, plugin="vectors-test")
    return host, plugin


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_hook_uses_backbone_false_means_no_backbone_is_loaded(vectors, tmp_path):
    host, plugin = vectors
    result = run_stage(host, "vectors", "train", overrides=QUICK, run_dir=tmp_path / "run")
    assert result.steps == 6 and plugin.backbone_stages == []
    checkpoint = RunDir(tmp_path / "run").last_checkpoint()
    assert not (checkpoint / "backbone").exists()
    assert load_file(str(checkpoint / "head.safetensors"))["weight"].dtype == torch.float32
    evaluated = run_stage(host, "vectors", "eval", run_dir=tmp_path / "run")
    assert evaluated.metrics["samples"] == 8 and evaluated.checkpoint.name == "step-00000006"


def test_hook_validate_default_logs_every_n_steps_and_keeps_the_best_checkpoint(vectors, tmp_path):
    host, _ = vectors
    run_dir = tmp_path / "run"
    result = run_stage(host, "vectors", "train", run_dir=run_dir,
                       overrides=("train.steps=12", "train.eval_every=4", "train.keep_checkpoints=1",
                                  "train.save_every=4"))
    rows = [m for m in metrics(run_dir) if "val/loss" in m]
    assert [m["step"] for m in rows] == [4, 8, 12]
    assert all({"val/mae", "val/samples", "val/nested/worst"} <= m.keys() for m in rows)
    best_row = min(rows, key=lambda m: m["val/loss"])
    assert result.best == {"metric": "val/loss", "value": pytest.approx(best_row["val/loss"]), "step": best_row["step"]}
    best = run_dir / "checkpoints" / "best"
    assert json.loads((best / "trainer_state.json").read_text())["step"] == best_row["step"]
    assert not (best / "optimizer.pt").exists()  # weights only
    assert [p.name for p in RunDir(run_dir).checkpoints()] == ["step-00000012"]  # pruning spares best

    evaluated = run_stage(host, "vectors", "eval", run_dir=run_dir)
    assert evaluated.checkpoint == best
    assert evaluated.metrics["mae"] == pytest.approx(best_row["val/mae"], rel=1e-5)
    assert run_stage(host, "vectors", "eval", run_dir=run_dir, checkpoint="last").checkpoint.name == "step-00000012"
    assert run_stage(host, "vectors", "eval", run_dir=run_dir, checkpoint="step-12").checkpoint.name == "step-00000012"
    with pytest.raises(qvl.UserError, match="step-00000004: no such checkpoint; kept: step-00000012, best"):
        run_stage(host, "vectors", "eval", run_dir=run_dir, checkpoint="step-4")


def test_best_metric_mode_and_an_unknown_metric(vectors, tmp_path):
    host, _ = vectors
    result = run_stage(host, "vectors", "train", run_dir=tmp_path / "a",
                       overrides=("train.steps=8", "train.eval_every=2", 'train.best_metric="val/samples"'))
    assert result.best["step"] == 2  # auto mode maximises a count; equal later values do not replace it
    result = run_stage(host, "vectors", "train", run_dir=tmp_path / "b",
                       overrides=("train.steps=8", "train.eval_every=2", 'train.best_metric="val/mae"'))
    rows = [m for m in metrics(tmp_path / "b") if "val/mae" in m]
    assert result.best["value"] == pytest.approx(min(m["val/mae"] for m in rows))  # auto: errors are minimised
    with pytest.raises(qvl.UserError, match="train.best_metric = 'val/success': validation gave val/loss, val/mae"):
        run_stage(host, "vectors", "train", run_dir=tmp_path / "c",
                  overrides=("train.steps=2", "train.eval_every=1", 'train.best_metric="val/success"'))


def test_patience_stops_when_the_metric_stops_improving(vectors, tmp_path):
    host, _ = vectors
    # a rate too small to move fp32 weights: the validation loss never improves after the first
    result = run_stage(host, "vectors", "train", run_dir=tmp_path / "run",
                       overrides=("train.steps=50", "train.eval_every=1", "train.patience=2", "train.lr=1e-30"))
    assert result.stopped_early and result.steps == 3 and result.best["step"] == 1
    assert RunDir(tmp_path / "run").last_checkpoint().name == "step-00000003"


def test_resume_restores_the_best_so_far(vectors, tmp_path):
    host, _ = vectors
    common = ("train.steps=8", "train.eval_every=2", "train.save_every=4", "train.keep_checkpoints=3",
              "train.lr=0.3", "train.scheduler=constant")
    straight = tmp_path / "straight"
    run_stage(host, "vectors", "train", overrides=common, run_dir=straight)
    interrupted = tmp_path / "interrupted"
    shutil.copytree(straight, interrupted)
    shutil.rmtree(interrupted / "checkpoints" / "step-00000008")
    state4 = json.loads((interrupted / "checkpoints" / "step-00000004" / "trainer_state.json").read_text())
    assert state4["best_value"] is not None
    resumed = run_stage(host, "vectors", "train", run_dir=interrupted, resume=True)
    expected = json.loads((straight / "checkpoints" / "step-00000008" / "trainer_state.json").read_text())
    got = json.loads((interrupted / "checkpoints" / "step-00000008" / "trainer_state.json").read_text())
    assert got["best_step"] == expected["best_step"] and got["best_value"] == pytest.approx(expected["best_value"])
    assert resumed.best["step"] == expected["best_step"]


@pytest.mark.parametrize(("scheduler", "expected"), [
    ("linear", [0.05, 0.05 * 3 / 4, 0.05 / 2, 0.05 / 4]),
    ("constant", [0.05] * 4),
    ("constant_with_warmup", [0.0, 0.025, 0.05, 0.05]),
])
def test_schedulers_and_warmup_ratio(vectors, tmp_path, scheduler, expected):
    host, _ = vectors
    overrides = ["train.steps=4", f"train.scheduler={scheduler}"]
    if scheduler == "constant_with_warmup":
        overrides.append("train.warmup_ratio=0.5")  # 2 of 4 steps
    run_stage(host, "vectors", "train", overrides=overrides, run_dir=tmp_path / "run")
    assert [m["lr"] for m in metrics(tmp_path / "run")] == pytest.approx(expected)


def test_epochs_replace_steps(vectors, tmp_path):
    host, _ = vectors
    result = run_stage(host, "vectors", "train", run_dir=tmp_path / "run",
                       overrides=("train.epochs=3", "task.samples=10", "train.grad_accum=2"))
    assert result.steps == 3  # 10 samples, batch 4: 2 batches an epoch, 2 per optimizer step


def test_hook_param_groups_sets_per_module_rates_and_must_cover_every_parameter(vectors, tmp_path):
    host, plugin = vectors
    plugin.groups = lambda head: [{"params": [head.weight], "lr": 0.01}, {"params": [head.bias], "lr": 0.02}]
    run_stage(host, "vectors", "train", overrides=("train.steps=1",), run_dir=tmp_path / "a")
    assert metrics(tmp_path / "a")[0]["lr"] == pytest.approx(0.01)  # the first group's rate is logged
    plugin.groups = lambda head: [{"params": [head.weight]}]
    with pytest.raises(ValueError, match="must list every trainable parameter exactly once .1 missing"):
        run_stage(host, "vectors", "train", overrides=("train.steps=1",), run_dir=tmp_path / "b")


def test_collators_get_an_rng_seeded_by_the_batch_so_resume_repeats_augmentation(vectors, tmp_path):
    host, plugin = vectors
    common = ("train.steps=4", "train.save_every=2", "train.keep_checkpoints=3")
    run_stage(host, "vectors", "train", overrides=common, run_dir=tmp_path / "a")
    straight = dict(plugin.collate_rngs)
    assert len(set(straight.values())) == len(straight) >= 4  # a different draw for every batch
    plugin.collate_rngs.clear()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "checkpoints" / "step-00000004")
    run_stage(host, "vectors", "train", run_dir=tmp_path / "b", resume=True)
    resumed = dict(plugin.collate_rngs)
    assert len(resumed) >= 2 and all(straight[ids] == draw for ids, draw in resumed.items())


def test_augmentation_draws_do_not_depend_on_the_number_of_workers(vectors, tmp_path):
    host, plugin = vectors
    run_stage(host, "vectors", "train", overrides=("train.steps=4",), run_dir=tmp_path / "a")
    alone = dict(plugin.collate_rngs)
    plugin.collate_rngs.clear()
    run_stage(host, "vectors", "train", overrides=("train.steps=4", "train.num_workers=2"), run_dir=tmp_path / "b")
    assert dict(plugin.collate_rngs) == alone and len(alone) == 4


def test_evaluation_is_seeded_and_repeatable(vectors, tmp_path):
    host, _ = vectors
    run_stage(host, "vectors", "train", overrides=QUICK, run_dir=tmp_path / "run")
    first = run_stage(host, "vectors", "eval", run_dir=tmp_path / "run").predictions
    torch.rand(5)  # whatever ran before
    again = run_stage(host, "vectors", "eval", run_dir=tmp_path / "run").predictions
    assert first == again and len({p["noise"] for p in first}) == 8


def test_a_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(vectors, tmp_path):
    host, _ = vectors
    with pytest.raises(TrainingDivergedError, match="the loss is not finite .nan. at step 3; the last complete"):
        run_stage(host, "vectors", "train", run_dir=tmp_path / "run",
                  overrides=("train.steps=6", "train.save_every=2", "task.nan_at_step=3"))
    assert [p.name for p in RunDir(tmp_path / "run").checkpoints()] == ["step-00000002"]
    assert isinstance(TrainingDivergedError("x"), qvl.UserError)


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_its_name(vectors, tmp_path):
    host, _ = vectors
    named = ("output_dir=" + repr(str(tmp_path / "runs")), "run_name=2024-06-01")
    with pytest.raises(TrainingDivergedError):
        run_stage(host, "vectors", "train", overrides=(*named, "task.nan_at_step=0"))
    result = run_stage(host, "vectors", "train", overrides=(*named, "train.steps=2"))
    assert result.run_dir.path == tmp_path / "runs" / "2024-06-01" and result.steps == 2
    from qvl.config import ConfigError

    with pytest.raises(ConfigError, match="already exists; resume it"):
        run_stage(host, "vectors", "train", overrides=(*named, "train.steps=2"))


def test_the_newest_run_is_chosen_by_its_start_time_not_by_mtime(vectors, tmp_path):
    host, _ = vectors
    out = ("output_dir=" + repr(str(tmp_path / "runs")), "train.steps=1")
    run_stage(host, "vectors", "train", overrides=(*out, "run_name=older"))
    time.sleep(0.05)
    run_stage(host, "vectors", "train", overrides=(*out, "run_name=newer"))
    old_config = tmp_path / "runs" / "older" / "config.toml"
    os.utime(old_config, (time.time() + 100, time.time() + 100))  # touched later, started earlier
    assert RunDir.latest(str(tmp_path / "runs"), "vectors").path.name == "newer"
    evaluated = run_stage(host, "vectors", "eval", overrides=out)
    assert evaluated.out_dir.parent.parent.name == "newer"


def test_train_refuses_a_users_folder_as_run_dir(vectors, tmp_path):
    host, _ = vectors
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep")
    with pytest.raises(qvl.UserError, match="not written by qvl.*choose another --run-dir"):
        run_stage(host, "vectors", "train", overrides=QUICK, run_dir=folder)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_a_tasks_own_stage_receives_what_it_names(vectors, tmp_path):
    host, _ = vectors
    seen = {}

    def export(config, run_dir, input, resume, checkpoint):
        seen.update(config=config, run_dir=run_dir, input=input, resume=resume, checkpoint=checkpoint)
        return "done"

    def bad(config, colour):
        return None

    host.tasks["vectors"] = attrs.evolve(host.tasks["vectors"], stages={"export": export, "bad": bad})
    run_stage(host, "vectors", "train", overrides=QUICK, run_dir=tmp_path / "run")
    assert run_stage(host, "vectors", "export", overrides=("task.samples=9",), run_dir=tmp_path / "run",
                     predict_input="in.mp4", resume=True) == "done"
    assert seen["config"].task.samples == 9 and seen["run_dir"] == tmp_path / "run"
    assert seen["input"] == "in.mp4" and seen["resume"] is True
    assert seen["checkpoint"] == tmp_path / "run" / "checkpoints" / "step-00000006"
    with pytest.raises(TypeError, match=r"stage 'bad' of task 'vectors' asks for \['colour'\]"):
        run_stage(host, "vectors", "bad")


def test_a_stage_asking_for_the_head_gets_the_trained_run_its_settings_and_folder(vectors, tmp_path):
    from safetensors.torch import load_file

    host, _ = vectors
    seen = {}

    def rollout(config, head, run_dir, save_vis):
        seen.update(config=config, head=head, run_dir=run_dir, save_vis=save_vis)

    def own(config, run_dir):
        seen.update(own=config.task.samples, own_dir=run_dir)

    host.tasks["vectors"] = attrs.evolve(host.tasks["vectors"], stages={"rollout": rollout, "own": own})
    run_stage(host, "vectors", "train", overrides=(*QUICK, "task.samples=12", f"output_dir={tmp_path / 'runs'}"),
              run_dir=tmp_path / "run")
    run_stage(host, "vectors", "rollout", overrides=("train.lr=0.5",), run_dir=tmp_path / "run", save_vis=True)
    saved = load_file(str(tmp_path / "run" / "checkpoints" / "step-00000006" / "head.safetensors"))
    assert torch.equal(seen["head"].weight, saved["weight"]) and not seen["head"].training
    assert seen["head"].weight.dtype == torch.float32
    assert seen["config"].task.samples == 12 and seen["config"].train.lr == 0.5  # the run's, --set on top
    assert seen["run_dir"] == tmp_path / "run" and seen["save_vis"] is True
    run_stage(host, "vectors", "own", run_dir=tmp_path / "other")  # no trained run needed
    assert seen["own"] == 32 and seen["own_dir"] == tmp_path / "other"


def test_hook_validate_replaced_by_a_task_picks_the_best_by_its_own_metric(vectors, tmp_path):
    host, _ = vectors
    calls = []

    class Rollouts:
        @qvl.hookimpl(tryfirst=True)
        def validate(self, task, head, step, accelerator):
            if task.name == "vectors":
                calls.append((step, head.training))
                return {"val/success": [0.2, 0.9, 0.5][len(calls) - 1]}

    host.pm.register(Rollouts(), name="rollouts")
    result = run_stage(host, "vectors", "train", run_dir=tmp_path / "run",
                       overrides=("train.steps=6", "train.eval_every=2", 'train.best_metric="val/success"'))
    assert calls == [(2, False), (4, False), (6, False)]  # in eval mode
    assert result.best == {"metric": "val/success", "value": 0.9, "step": 4}
