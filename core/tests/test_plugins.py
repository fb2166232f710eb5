import importlib
import types

import pluggy
import pytest

import qvl
from qvl import plugins
from qvl.plugins import MissingHookError, UnknownTaskError, load_plugins


def test_builtin_plugins_register_like_third_party_ones(qvl_host):
    names = [p.name for p in qvl_host.plugins]
    assert names[:3] == ["qvl.backbone", "qvl.validation", "qvl.colors"]
    assert qvl_host.tasks["colors"].plugin == "qvl.colors"
    assert qvl_host.tasks["colors"].all_stages == ("train", "eval", "predict")


def test_hook_register_tasks_conflicting_names_are_reported_and_first_kept(monkeypatch):
    clash = types.ModuleType("clash_plugin")

    @qvl.hookimpl
    def register_tasks(register):
        register(qvl.Task(name="colors", config_class=dict))

    clash.register_tasks = register_tasks
    monkeypatch.setitem(plugins.DEFAULT_PLUGINS, "clash", "clash_plugin")
    monkeypatch.setitem(importlib.sys.modules, "clash_plugin", clash)
    host = load_plugins()
    assert host.tasks["colors"].plugin == "qvl.colors"
    (error,) = [e for e in host.errors if e.name == "clash"]
    assert "already registered by plugin 'qvl.colors'" in error.error


def test_unknown_task_lists_installed_ones(qvl_host):
    with pytest.raises(UnknownTaskError, match="unknown task 'no-such-task'; installed tasks: .*colors"):
        qvl_host.task("no-such-task")


def test_required_hook_without_answer_is_a_clear_error(qvl_host):
    task = qvl.Task(name="orphan", config_class=dict, plugin="nobody")
    with pytest.raises(MissingHookError, match="no plugin implements hook 'decode' for task 'orphan'"):
        qvl_host.call("decode", task=task, config=None, backbone=None, head=None, batch={})


def test_load_plugins_env_empty_loads_builtins_only(monkeypatch):
    monkeypatch.setenv(plugins.LOAD_PLUGINS_ENV, "")
    host = load_plugins()
    assert [p.name for p in host.plugins] == list(plugins.DEFAULT_PLUGINS)


def test_trace_switch_prints_every_hook_call(monkeypatch, capsys):
    monkeypatch.setenv(plugins.TRACE_ENV, "1")
    host = load_plugins()
    task = host.task("colors")
    host.hooks.build_head(task=task, config=None, backbone=None)
    err = capsys.readouterr().err
    assert "[qvl hook] build_head task=colors ->" in err
    reached = err.split("[qvl hook] build_head task=colors -> ", 1)[1].splitlines()[0]
    assert "grasp" not in reached and "reward" not in reached  # owner-only: other tasks' plugins are not called
    assert "[qvl hook] build_head returned NoneType" in err


def test_hookimpl_is_exported_from_the_package_root():
    assert isinstance(qvl.hookimpl, pluggy.HookimplMarker)
    assert qvl.hookimpl.project_name == "qvl"


def test_hook_prepare_backbone_adjusts_the_model_before_lora():
    from qvl.config import load_config

    host = load_plugins()
    seen = []

    class AddFrameToken:
        @qvl.hookimpl
        def prepare_backbone(self, task, model, processor):
            seen.append((task.name, type(model).__name__))
            processor.tokenizer.add_special_tokens({"additional_special_tokens": ["<FRAME>"]})
            model.resize_token_embeddings(model.get_input_embeddings().num_embeddings + 64)

    host.pm.register(AddFrameToken(), name="frame-token")
    task = host.task("colors")
    config = load_config(task, overrides=["backbone.finetune=lora", "backbone.lora.r=4",
                                          'backbone.lora.modules_to_save=["embed_tokens"]'])
    backbone = host.call("load_backbone", task=task, config=config, stage="eval")
    assert seen == [("colors", "Qwen3VLForConditionalGeneration")]  # the bare model, before peft
    assert backbone.tokenizer.convert_tokens_to_ids("<FRAME>") == 151669
    assert backbone.base_model.get_input_embeddings().num_embeddings == 151936 + 64
    trainable = [n for n, p in backbone.model.named_parameters() if p.requires_grad]
    assert any("embed_tokens" in n and "modules_to_save" in n for n in trainable)


def test_a_stages_own_options_become_settings():
    from qvl.task import stage_option_overrides

    task = qvl.Task(name="sim", config_class=object, stage_options={"rollout": {"--server": "task.server",
                                                                                "--episodes": "task.episodes"}})
    assert stage_option_overrides(task, "rollout", ["--server", "ws://h:1", "--episodes=5"]) == [
        "task.server=ws://h:1", "task.episodes=5"]
    with pytest.raises(ValueError, match=r"unknown option '--colour' \(this stage's own options: --server, "):
        stage_option_overrides(task, "rollout", ["--colour", "red"])
    with pytest.raises(ValueError, match="own options: none"):
        stage_option_overrides(task, "train", ["--server", "x"])
    with pytest.raises(ValueError, match="--server needs a value"):
        stage_option_overrides(task, "rollout", ["--server"])
    with pytest.raises(ValueError, match="expected '--name' -> 'dotted.key'"):
        qvl.Task(name="bad", config_class=object, stage_options={"rollout": {"server": "task.server"}})


def test_task_defaults_reads_the_toml_beside_a_module_and_names_a_bad_or_missing_file(tmp_path):
    module = tmp_path / "plugin.py"
    (tmp_path / "defaults.toml").write_text('[train]\nsteps = 7\n\n[task.synthetic]\nsizes = [1, 2]\n')
    assert qvl.task_defaults(str(module)) == {"train": {"steps": 7}, "task": {"synthetic": {"sizes": [1, 2]}}}
    (tmp_path / "defaults.toml").write_text("[train\n")
    with pytest.raises(qvl.UserError, match=r"defaults\.toml: not valid TOML"):
        qvl.task_defaults(str(module))
    with pytest.raises(qvl.UserError, match=r"other\.toml: the task's defaults file is missing"):
        qvl.task_defaults(str(module), "other.toml")


def test_every_plugins_defaults_file_is_in_its_wheel_configuration():
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "plugins"
    for plugin in ("grasp", "reward", "vqa", "segment", "vla_flow"):
        package = f"qvl_{plugin}"
        assert (root / plugin / "src" / package / "defaults.toml").is_file()
        project = tomllib.loads((root / plugin / "pyproject.toml").read_text())
        assert "defaults.toml" in project["tool"]["setuptools"]["package-data"][package], plugin


def test_registers_makes_a_register_tasks_hook_implementation_of_the_given_tasks():
    first = qvl.Task(name="first", config_class=object)
    second = qvl.Task(name="second", config_class=object)
    hook = qvl.registers(first, second)
    assert hook.__name__ == "register_tasks" and hasattr(hook, "qvl_impl")
    registered = []
    hook(registered.append)
    assert registered == [first, second]


def test_a_tasks_description_is_its_config_classs_docstring_unless_given():
    import attrs

    @attrs.define
    class Documented:
        """Count the cubes
        in one image.

        The task's settings."""

        size: int = 1

    @attrs.define
    class Bare:
        size: int = 1

    assert qvl.Task("count", Documented).description == "Count the cubes in one image."
    assert qvl.Task("count", Documented, description="mine").description == "mine"
    assert qvl.Task("count", Bare).description == ""  # not object's docstring, inherited


def test_every_installed_task_says_what_it_does(qvl_host):
    for name in ("colors", "grasp", "reward", "vqa", "segment", "vla_flow"):
        description = qvl_host.task(name).description
        assert 40 < len(description) < 200 and "\n" not in description, (name, description)


def test_hook_annotation_types_are_attributes_of_the_package():
    from qvl.backbone import Backbone
    from qvl.config import RunConfig

    assert qvl.RunConfig is RunConfig and qvl.Backbone is Backbone
    assert {"RunConfig", "Backbone", "Samples", "EvalResult"} <= set(dir(qvl))
