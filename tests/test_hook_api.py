"""Hook API 4: owner-only dispatch, declared extensions, and plugins written for API 3 unchanged."""

import importlib
import json
import sys

import pytest


def _host(site, monkeypatch):
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    from qvl.plugins import load_plugins

    return load_plugins()


@pytest.fixture
def host_with_site(plugin_site, monkeypatch):
    yield _host(plugin_site, monkeypatch)
    for name in ("qvl_brightness", "qvl_count", "qvl_colors_extra"):
        sys.modules.pop(name, None)


@pytest.fixture
def host_with_legacy_site(legacy_site, monkeypatch):
    yield _host(legacy_site, monkeypatch)
    for name in ("qvl_brightness_api3", "qvl_count_api3", "qvl_colors_extra4", "qvl_future"):
        sys.modules.pop(name, None)


def test_hook_register_tasks_of_api4_plugins_limits_each_task_to_its_owner_and_api3_plugins(host_with_site):
    hooks = host_with_site.hooks
    brightness, colors = host_with_site.task("brightness"), host_with_site.task("colors")
    # the README example (API 4, no guards) is not called for colors, nor colors for brightness
    assert "brightness" not in hooks.callers_for(colors) and "count" not in hooks.callers_for(colors)
    assert "qvl.colors" not in hooks.callers_for(brightness)
    # the built-in defaults serve every task; a plugin without QVL_HOOK_API (API 3) sees every task
    for task in (brightness, colors):
        assert {"qvl.backbone", "qvl.validation", "colors_extra"} <= set(hooks.callers_for(task))
    config = __import__("qvl.config", fromlist=["load_config"]).load_config(colors, overrides=["task.train_samples=2"])
    samples = host_with_site.call("build_dataset", task=colors, config=config, split="train")
    assert [s["id"] for s in samples] == ["train-00000", "train-00001"]  # not brightness' unguarded answer


def test_plugins_lists_each_plugins_hook_api_and_extensions(run_qvl, legacy_site):
    described = json.loads(run_qvl("plugins", site=legacy_site).stdout)
    assert described["hook_api_version"] == 5
    by_name = {p["name"]: p for p in described["plugins"]}
    assert by_name["qvl.colors"]["hook_api"] == 4 and by_name["brightness_api3"]["hook_api"] == 3
    assert by_name["colors_extra4"]["extends"] == ["colors"] and by_name["colors_extra4"]["tasks"] == []
    # the core's version beside its hook API; each plugin distribution's qvl-core requirement
    assert described["core_version"] == __import__("qvl").__version__
    assert by_name["qvl.colors"]["requires_core"] is None  # built in: it is the core
    if "grasp" in by_name:  # the repository's plugins, installed in this environment
        assert by_name["grasp"]["requires_core"] == "qvl-core<0.2,>=0.1.3"


def test_a_plugin_needing_a_newer_hook_api_is_refused_with_a_clear_load_error(run_qvl, legacy_site):
    result = run_qvl("tasks", site=legacy_site)
    assert result.returncode == 0, result.stderr  # the other plugins keep working
    assert "brightness" in {t["name"] for t in json.loads(result.stdout)}
    assert "plugin 'future' failed to load" in result.stderr
    assert "needs qvl hook API 99" in result.stderr and "provides API 5" in result.stderr
    assert "upgrade qvl-core" in result.stderr
    described = json.loads(run_qvl("plugins", site=legacy_site).stdout)
    assert "future" not in {p["name"] for p in described["plugins"]}


def test_a_malformed_hook_api_declaration_is_that_plugins_load_error():
    from qvl.plugins import _checked_hook_api

    class Declares:
        QVL_HOOK_API = "4"

    with pytest.raises(TypeError, match="QVL_HOOK_API = '4': expected the hook API version"):
        _checked_hook_api("p", Declares())
    Declares.QVL_HOOK_API = 4
    assert _checked_hook_api("p", Declares()) == 4
    Declares.QVL_HOOK_API = 5  # answer_constraint; dispatched as API 4 is
    assert _checked_hook_api("p", Declares()) == 5
    assert _checked_hook_api("p", object()) == 3


@pytest.mark.slow
def test_the_readme_examples_as_written_for_api3_train_evaluate_and_predict_unchanged(run_qvl, legacy_site, tmp_path):
    quick = ["--set", "train.steps=6", "--set", "train.log_every=2", "--set", "task.samples=16"]
    for stage in ("train", "eval", "predict"):
        result = run_qvl("run", "brightness", stage, *(quick if stage == "train" else quick[4:]),
                         site=legacy_site, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "eval" / "val" / "eval.json").read_text())["accuracy"] >= 0.75

    count = ["--set", "train.steps=2", "--set", "train.batch_size=2", "--set", "task.eval_samples=4",
             "--set", "task.train_samples=8"]
    counted = tmp_path / "count"
    for stage in ("train", "eval"):
        result = run_qvl("run", "count", stage, "--run-dir", str(counted), *count, site=legacy_site, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (counted / "eval" / "val" / "predictions.jsonl").open()]
    assert len(rows) == 4 and {r["answer"] for r in rows} <= {"1", "2", "3", "4", "5"}


@pytest.mark.slow
def test_hook_decode_replaced_and_evaluate_wrapped_by_a_declared_api4_extension(host_with_legacy_site, tmp_path,
                                                                                 qvl_quick_run):
    from qvl.runner.stages import run_stage

    host = host_with_legacy_site
    assert "colors_extra4" in host.hooks.callers_for(host.task("colors"))
    assert "colors_extra4" not in host.hooks.callers_for(host.task("brightness"))
    run_dir = tmp_path / "run"
    run_stage(host, "colors", "train", overrides=[*qvl_quick_run, "task.train_samples=8"], run_dir=run_dir)
    result = run_stage(host, "colors", "eval", overrides=list(qvl_quick_run), run_dir=run_dir)
    assert result.metrics["wrapped_by"] == "qvl-colors-extra4"
    assert all(p["decoder"] == "first-token-choice-api4" for p in result.predictions)
    assert host.tasks["colors"].plugin == "qvl.colors"


@pytest.mark.parametrize("api", [4, 5])  # API 5 adds a hook and dispatches as API 4 does
def test_an_api4_plugin_object_that_is_not_hashable_is_left_out_of_other_tasks(api):
    import attrs

    from qvl import hookimpl
    from qvl.plugins import load_plugins

    @attrs.define  # eq=True makes instances unhashable, which pluggy's subset_hook_caller cannot take
    class Stranger:
        QVL_HOOK_API = 4
        calls: list = attrs.field(factory=list)

        @hookimpl(tryfirst=True)
        def build_head(self, task):
            self.calls.append(task.name)
            return "not yours"

    host = load_plugins()
    Stranger.QVL_HOOK_API = api
    stranger = Stranger()
    host.pm.register(stranger, name="stranger")
    assert host.call("build_head", task=host.task("colors"), config=None, backbone=None, required=False) is None
    assert stranger.calls == []
    host.hooks.extensions["stranger"] = {"colors"}
    assert host.call("build_head", task=host.task("colors"), config=None, backbone=None) == "not yours"
