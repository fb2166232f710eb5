"""Plugins installed as real distributions (pip --target), discovered through entry points."""

import importlib
import json
import sys

import pytest


@pytest.fixture
def host_with_site(plugin_site, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_site))
    importlib.invalidate_caches()
    from qvl.plugins import load_plugins

    yield load_plugins()
    for name in ("qvl_brightness", "qvl_colors_extra", "qvl_typo", "qvl_badargs"):
        sys.modules.pop(name, None)


def test_installed_plugins_are_listed_with_versions_hooks_tasks_and_errors(run_qvl, plugin_site):
    described = json.loads(run_qvl("plugins", site=plugin_site).stdout)
    by_name = {p["name"]: p for p in described["plugins"]}
    assert by_name["brightness"]["distribution"] == "qvl-brightness"
    assert by_name["brightness"]["version"] == "0.1.0"
    assert by_name["brightness"]["tasks"] == ["brightness"]
    assert set(by_name["brightness"]["hooks"]) == {"register_tasks", "build_dataset", "build_collator",
                                                   "build_head", "loss", "decode", "evaluate"}  # recipe hooks too
    assert by_name["colors_extra"]["hooks"] == ["decode", "evaluate"]
    errors = {e["name"]: e["error"] for e in described["errors"]}
    assert "No module named 'qvl_dependency_that_is_not_installed'" in errors["broken"]
    assert "unknown hook" in errors["typo"] and "build_datset" in errors["typo"]
    assert "nonsense" in errors["badargs"]
    assert not {"typo", "broken", "badargs"} & set(by_name)


def test_a_plugin_refused_halfway_leaves_no_hook_behind(host_with_site):
    assert not any(impl.plugin_name == "badargs"
                   for caller in host_with_site.pm.get_hookcallers(host_with_site.pm.get_plugin("qvl.colors")) or []
                   for impl in caller.get_hookimpls())
    task = host_with_site.task("colors")
    config = __import__("qvl.config", fromlist=["load_config"]).load_config(task, overrides=["task.train_samples=2"])
    samples = host_with_site.call("build_dataset", task=task, config=config, split="train")
    assert [s["id"] for s in samples] == ["train-00000", "train-00001"]  # not qvl-badargs' answer


def test_a_broken_plugin_does_not_stop_the_others(run_qvl, plugin_site):
    result = run_qvl("tasks", site=plugin_site)
    assert result.returncode == 0
    names = {t["name"] for t in json.loads(result.stdout)}
    assert {"colors", "brightness"} <= names and "broken" not in names
    assert "plugin 'broken' failed to load" in result.stderr


def test_load_plugins_env_selects_by_entry_point_or_distribution_name(run_qvl, plugin_site):
    only = run_qvl("plugins", site=plugin_site, env={"QVL_LOAD_PLUGINS": "qvl-brightness"})
    names = [p["name"] for p in json.loads(only.stdout)["plugins"]]
    assert names == ["qvl.backbone", "qvl.validation", "qvl.colors", "qvl.sft", "brightness"]
    none = run_qvl("plugins", site=plugin_site, env={"QVL_LOAD_PLUGINS": ""})
    assert json.loads(none.stdout)["errors"] == []


@pytest.mark.slow
def test_hook_build_head_of_a_third_party_task_trains_evaluates_predicts_through_the_cli(
        run_qvl, plugin_site, tmp_path):
    quick = ["--set", "train.steps=6", "--set", "train.log_every=2", "--set", "task.samples=16"]
    train = run_qvl("run", "brightness", "train", *quick, site=plugin_site, cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    checkpoint = run_dir / "checkpoints" / "step-00000006"
    assert (checkpoint / "head.safetensors").is_file()
    assert not (checkpoint / "backbone").exists()  # frozen backbone: only the head is saved

    evaluated = run_qvl("run", "brightness", "eval", "--set", "task.samples=16", site=plugin_site, cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((run_dir / "eval" / "val" / "eval.json").read_text())
    assert metrics["samples"] == 16
    assert metrics["model"]["accuracy"] >= 0.75  # brightness is linearly readable from the frozen features
    assert metrics["baselines"]["majority_class"] == {"label": "dark", "accuracy": 0.5}
    assert f"  {'accuracy':<28} {metrics['model']['accuracy']:.4f}" in evaluated.stdout  # the saved number is printed
    assert (run_dir / "eval" / "val" / "comparison.md").read_text().startswith("| method | accuracy |")

    predicted = run_qvl("run", "brightness", "predict", "--set", "task.samples=4", site=plugin_site, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr
    (out,) = (run_dir / "predict").iterdir()
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["predict-0", "predict-1", "predict-2", "predict-3"]
    assert all(r["label"] in ("dark", "bright") and 0.0 <= r["probabilities"]["bright"] <= 1.0 for r in rows)


@pytest.mark.slow
def test_hook_decode_replaced_and_evaluate_wrapped_by_another_plugin(host_with_site, tmp_path, qvl_quick_run):
    from qvl.runner.stages import run_stage

    run_dir = tmp_path / "run"
    run_stage(host_with_site, "colors", "train", overrides=[*qvl_quick_run, "task.train_samples=8"], run_dir=run_dir)
    result = run_stage(host_with_site, "colors", "eval", overrides=list(qvl_quick_run), run_dir=run_dir)
    assert result.metrics["wrapped_by"] == "qvl-colors-extra"
    assert all(p["decoder"] == "first-token-choice" for p in result.predictions)
    assert result.metrics["invalid_rate"] == 0.0  # the replacement can only answer allowed colours
    assert host_with_site.tasks["colors"].plugin == "qvl.colors"  # ownership did not move


@pytest.mark.slow
def test_a_frozen_backbone_stays_outside_the_module_ddp_wraps(host_with_site, tmp_path, qvl_quick_run, monkeypatch):
    from qvl.runner import training
    from qvl.runner.stages import run_stage

    wrapped = []
    real = training.TaskModule

    def recording(backbone_model, head, compute_loss):
        wrapped.append((backbone_model, head))
        return real(backbone_model, head, compute_loss)

    monkeypatch.setattr(training, "TaskModule", recording)
    run_stage(host_with_site, "brightness", "train", overrides=[*qvl_quick_run, "task.samples=8"],
              run_dir=tmp_path / "frozen")
    (backbone_model, head), = wrapped
    assert backbone_model is None and head is not None  # only the head is synchronised by DDP
    run_stage(host_with_site, "colors", "train", overrides=[*qvl_quick_run, "task.train_samples=8"],
              run_dir=tmp_path / "full")
    assert wrapped[1][0] is not None  # a trained backbone is part of the module


@pytest.mark.slow
def test_export_of_a_head_task_loads_back_with_its_trained_head(host_with_site, tmp_path):
    import torch
    from safetensors.torch import load_file

    from qvl.export import export_run, load_exported
    from qvl.runner.rundir import RunDir
    from qvl.runner.stages import run_stage

    run = tmp_path / "run"
    run_stage(host_with_site, "brightness", "train", run_dir=run,
              overrides=["train.steps=2", "train.batch_size=2", "task.samples=8", "train.eval_every=0"])
    out = export_run(host_with_site, run, tmp_path / "exported")
    assert {"config.json", "model.safetensors", "head.safetensors", "head.json", "qvl_config.toml"} <= {
        p.name for p in out.iterdir()}
    assert json.loads((out / "head.json").read_text())["task"] == "brightness"
    backbone, head = load_exported(out, host=host_with_site)
    trained = load_file(str(RunDir(run).checkpoint() / "head.safetensors"))
    assert trained and all(torch.equal(head.state_dict()[name], value) for name, value in trained.items())
    assert not head.training and not any(p.requires_grad for p in backbone.model.parameters())
    assert "load_exported" in (out / "README.md").read_text() and "frozen backbone" in (out / "README.md").read_text()
