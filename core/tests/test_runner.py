import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from qvl import UserError
from qvl.runner.rundir import RunDir

pytestmark = pytest.mark.slow


def test_hook_build_dataset_build_collator_loss_decode_evaluate_run_end_to_end(
        qvl_run_stage, qvl_run_dir, qvl_quick_run, tmp_path, qvl_host):
    from qvl.config import load_config

    qvl_run_stage_task = qvl_host.task
    trained = qvl_run_stage("colors", "train", *qvl_quick_run, "task.train_samples=8")
    assert trained.steps == 2
    run = RunDir(qvl_run_dir)
    (checkpoint,) = run.checkpoints()
    assert checkpoint.name == "step-00000002"
    assert {"backbone", "optimizer.pt", "scheduler.pt", "trainer_state.json", "rng-0.safetensors"} <= {
        p.name for p in checkpoint.iterdir()}
    assert (checkpoint / "backbone" / "model.safetensors").is_file()  # full fine-tune: HF directory
    metrics = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all(m["loss"] > 0 for m in metrics)
    # the rate each step used: cosine without warmup over 2 steps from the task's 3e-3
    assert [m["lr"] for m in metrics] == pytest.approx([3e-3, 1.5e-3], abs=1e-12)
    assert (qvl_run_dir / "loss.png").stat().st_size > 1000
    assert list((qvl_run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert "[backbone]" in run.config_path.read_text()
    ids = [json.loads(line)["ids"] for line in (qvl_run_dir / "samples" / "rank-0.jsonl").read_text().splitlines()]
    assert len(ids) == 2 and all(len(batch) == 2 for batch in ids)

    evaluated = qvl_run_stage("colors", "eval", *qvl_quick_run)
    assert evaluated.metrics["samples"] == 4
    rows = [json.loads(line) for line in (qvl_run_dir / "eval" / "val" / "predictions.jsonl").read_text().splitlines()]
    colors = load_config(qvl_run_stage_task("colors")).task.colors
    correct = sum(r["answer"] == colors[int(r["id"].split("-")[1]) % len(colors)] for r in rows)
    assert evaluated.metrics["accuracy"] == correct / 4  # the metric is recomputed from what was written
    assert evaluated.metrics["baselines"]["majority_class"]["accuracy"] == 0.25  # 4 samples, 4 colours
    saved = json.loads((qvl_run_dir / "eval" / "val" / "eval.json").read_text())
    assert saved == evaluated.metrics
    assert len((qvl_run_dir / "eval" / "val" / "predictions.jsonl").read_text().splitlines()) == 4
    assert (qvl_run_dir / "eval" / "val" / "per_color_accuracy.png").stat().st_size > 1000

    folder = tmp_path / "images"
    folder.mkdir()
    for name, color in [("a.png", "red"), ("b.png", "blue"), ("c.jpg", "green")]:
        Image.new("RGB", (64, 64), color).save(folder / name)
    predicted = qvl_run_stage("colors", "predict", predict_input=str(folder))
    assert [p["id"] for p in predicted.predictions] == ["a.png", "b.png", "c.jpg"]
    assert all("answer" in p for p in predicted.predictions)
    assert (predicted.out_dir / "predictions.jsonl").is_file()
    assert predicted.metrics is None and not (predicted.out_dir / "summary.json").exists()  # optional hook


def test_hook_report_predictions_gets_the_predict_outputs_and_save_vis(qvl_host, qvl_run_stage, qvl_quick_run):
    import types

    from qvl import hookimpl

    seen = {}

    @hookimpl
    def report_predictions(task, config, predictions, dataset, out_dir):
        if task.name != "colors":
            return None
        seen.update(ids=[p["id"] for p in predictions], samples=len(dataset), save_vis=config.predict.save_vis)
        (out_dir / "picture.png").write_bytes(b"png")
        return {"answers": sorted({p["answer"] for p in predictions})}

    qvl_run_stage("colors", "train", *qvl_quick_run, "train.steps=1", "task.train_samples=4")
    plugin = qvl_host.pm.register(types.SimpleNamespace(report_predictions=report_predictions), name="reporter")
    try:
        predicted = qvl_run_stage("colors", "predict", *qvl_quick_run, save_vis=True)
    finally:
        qvl_host.pm.unregister(name=plugin)
    assert seen == {"ids": [p["id"] for p in predicted.predictions], "samples": 4, "save_vis": True}
    assert json.loads((predicted.out_dir / "summary.json").read_text()) == predicted.metrics
    assert predicted.metrics["answers"] and (predicted.out_dir / "picture.png").is_file()


def test_hook_build_head_none_means_the_lm_head_only(qvl_host):
    task = qvl_host.task("colors")
    assert qvl_host.call("build_head", task=task, config=None, backbone=None, required=False) is None


def test_hook_load_backbone_default_reads_the_backbone_config(qvl_host):
    from qvl.config import load_config

    task = qvl_host.task("colors")
    config = load_config(task, overrides=["backbone.finetune=frozen"])
    backbone = qvl_host.call("load_backbone", task=task, config=config, stage="eval")
    assert backbone.name == "embedded:qwen3-vl-tiny" and backbone.trainable_parameters()[0] == 0


def test_resume_continues_exactly_where_it_stopped(qvl_run_stage, tmp_path, qvl_quick_run):
    common = (*qvl_quick_run, "task.train_samples=16", "backbone.finetune=lora", "backbone.lora.r=4",
              "backbone.lora.dropout=0.0", "train.lr=1e-2", "train.steps=4", "train.save_every=2",
              "train.keep_checkpoints=3")
    straight = tmp_path / "straight"
    qvl_run_stage("colors", "train", *common, run_dir=straight)
    # an interruption after step 2: the run directory as it was when step-2 had been written
    interrupted = tmp_path / "interrupted"
    shutil.copytree(straight, interrupted)
    shutil.rmtree(interrupted / "checkpoints" / "step-00000004")
    samples = interrupted / "samples" / "rank-0.jsonl"
    samples.write_text("".join(samples.read_text().splitlines(keepends=True)[:2]))
    resumed = qvl_run_stage("colors", "train", run_dir=interrupted, resume=True)
    assert resumed.steps == 4

    def adapter(run):
        return load_file(str(RunDir(run).last_checkpoint() / "backbone" / "adapter_model.safetensors"))

    expected, got = adapter(straight), adapter(interrupted)
    assert expected.keys() == got.keys() and len(expected) == 4 * 7 * 2
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-6)
    assert samples.read_text() == (straight / "samples" / "rank-0.jsonl").read_text()  # same batches


def test_a_partial_checkpoint_is_never_picked(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "checkpoints" / "step-00000002").mkdir(parents=True)
    (tmp_path / "checkpoints" / ".tmp-step-00000004").mkdir()
    assert run.last_checkpoint().name == "step-00000002"


def test_eval_without_checkpoint_is_a_clear_error(qvl_run_stage, qvl_run_dir, colors_task):
    from qvl.config import load_config

    RunDir(qvl_run_dir).write_config(load_config(colors_task))
    with pytest.raises(UserError, match="no complete checkpoint; run 'qvl run colors train' first"):
        qvl_run_stage("colors", "eval")


def test_predict_input_that_does_not_exist(qvl_run_stage, qvl_quick_run, tmp_path):
    qvl_run_stage("colors", "train", *qvl_quick_run, "task.train_samples=4", "train.steps=1")
    with pytest.raises(UserError, match="predict.input = .*nothing-here.*no such file"):
        qvl_run_stage("colors", "predict", predict_input=str(tmp_path / "nothing-here"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(UserError, match="broken.png: not a readable image"):
        qvl_run_stage("colors", "predict", predict_input=str(broken))


def test_gradient_accumulation_matches_the_larger_batch(qvl_run_stage, tmp_path, qvl_quick_run):
    common = (*qvl_quick_run, "task.train_samples=16", "backbone.finetune=lora", "backbone.lora.r=4",
              "backbone.lora.dropout=0.0", "train.lr=1e-2", "train.steps=2")
    qvl_run_stage("colors", "train", *common, "train.batch_size=4", run_dir=tmp_path / "big")
    qvl_run_stage("colors", "train", *common, "train.batch_size=2", "train.grad_accum=2", run_dir=tmp_path / "accum")

    def adapter(run):
        return load_file(str(RunDir(run).last_checkpoint() / "backbone" / "adapter_model.safetensors"))

    def losses(run):
        return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert losses(tmp_path / "accum") == pytest.approx(losses(tmp_path / "big"), rel=1e-4)
    big, accum = adapter(tmp_path / "big"), adapter(tmp_path / "accum")
    for key in big:
        # Adam turns float-rounding noise on near-zero gradients into up to lr-sized moves; a missing
        # accumulation would differ by about lr (1e-2) almost everywhere
        torch.testing.assert_close(accum[key], big[key], rtol=1e-2, atol=2e-3)
    assert any(v.abs().sum() > 0 for k, v in big.items() if "lora_B" in k)


def test_qlora_run_trains_saves_the_adapter_and_evaluates_from_it(qvl_run_stage, qvl_run_dir, qvl_quick_run):
    qlora = ("backbone.finetune=qlora", "backbone.lora.r=4", "backbone.quantization.compute_dtype=float32")
    qvl_run_stage("colors", "train", *qvl_quick_run, *qlora, "task.train_samples=4")
    checkpoint = RunDir(qvl_run_dir).last_checkpoint()
    assert (checkpoint / "backbone" / "adapter_config.json").is_file()
    assert not (checkpoint / "backbone" / "model.safetensors").exists()  # the 4-bit base is not copied
    result = qvl_run_stage("colors", "eval", *qvl_quick_run)
    assert result.metrics["samples"] == 4


def test_training_into_a_run_that_has_checkpoints_needs_resume(qvl_run_stage, qvl_quick_run):
    from qvl.config import ConfigError

    qvl_run_stage("colors", "train", *qvl_quick_run, "task.train_samples=4", "train.steps=1")
    with pytest.raises(ConfigError, match="already has checkpoints; continue it with --resume"):
        qvl_run_stage("colors", "train", *qvl_quick_run, "task.train_samples=4", "train.steps=1")


def test_frozen_backbone_without_head_has_nothing_to_train(qvl_run_stage, qvl_quick_run):
    with pytest.raises(UserError, match="nothing to train: backbone.finetune = 'frozen' and task 'colors' builds no head"):
        qvl_run_stage("colors", "train", *qvl_quick_run, "task.train_samples=4", "backbone.finetune=frozen")


def test_weight_decay_spares_biases_and_norms():
    from qvl.runner.modules import parameter_groups

    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[2].weight.requires_grad_(False)
    decay, no_decay = parameter_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]
    assert [p.shape for p in no_decay["params"]] == [torch.Size([4]), torch.Size([4]), torch.Size([4]),
                                                     torch.Size([2])]
