import json
import subprocess
import sys


def test_help_imports_neither_torch_nor_plugins():
    code = ("import sys, contextlib, io\nfrom qvl import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: cli.main(['--help'])\n    except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'qvl.plugins', 'qvl.builtin.colors') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_version_and_help(run_qvl):
    assert run_qvl("--version").stdout.strip() == "qvl 0.1.3"
    help_text = run_qvl("--help").stdout
    for command in ("run", "config", "tasks", "plugins"):
        assert command in help_text


def test_tasks_and_plugins_are_json(run_qvl):
    tasks = json.loads(run_qvl("tasks").stdout)
    colors = next(t for t in tasks if t["name"] == "colors")
    assert colors["plugin"] == "qvl.colors" and colors["stages"] == ["train", "eval", "predict"]
    described = json.loads(run_qvl("plugins").stdout)
    core = next(p for p in described["plugins"] if p["name"] == "qvl.colors")
    assert core["version"] == "0.1.3" and "decode" in core["hooks"] and core["tasks"] == ["colors"]


def test_config_prints_effective_toml_with_overrides(run_qvl):
    result = run_qvl("config", "colors", "--set", "train.lr=0.0005", "--set", "task.image_size=32")
    assert result.returncode == 0
    assert "lr = 0.0005" in result.stdout and "image_size = 32" in result.stdout


def test_bad_config_exits_2_with_a_readable_message_and_no_traceback(run_qvl, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("[train]\nsteps = 10\nbatch_size = 'big'\n[backbone]\nfinetune = 'lore'\n")
    result = run_qvl("run", "colors", "train", "--config", str(config))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{config}, line 3: train.batch_size: expected an integer, got 'big'" in result.stderr
    assert f"{config}, line 5: backbone.finetune: expected one of 'full', 'lora', 'qlora', 'frozen'" in result.stderr


def test_unknown_task_and_stage(run_qvl, tmp_path):
    result = run_qvl("run", "nope", "train", cwd=tmp_path)
    assert result.returncode == 2 and "unknown task 'nope'" in result.stderr and "Traceback" not in result.stderr
    result = run_qvl("run", "colors", "fly", cwd=tmp_path)
    assert result.returncode == 2 and "has no stage 'fly'" in result.stderr


def test_eval_without_a_run_says_what_to_do(run_qvl, tmp_path):
    result = run_qvl("run", "colors", "eval", cwd=tmp_path)
    assert result.returncode == 2
    assert "no run of task 'colors' under runs/; train one first" in result.stderr


def test_an_error_that_is_not_the_users_shows_its_traceback_and_exits_1(run_qvl, plugin_site, tmp_path):
    result = run_qvl("run", "vectors", "train", "--set", "task.crash=true", site=plugin_site, cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "index 7 is out of bounds" in result.stderr
    assert "internal error (the traceback above is a bug in qvl, a plugin or a library" in result.stderr
    mistake = run_qvl("run", "vectors", "train", "--set", "task.crash=maybe", site=plugin_site, cwd=tmp_path)
    assert mistake.returncode == 2 and "Traceback" not in mistake.stderr


def test_a_stages_own_options_reach_its_settings(run_qvl, tmp_path):
    # vla_flow's rollout maps --episodes to task.rollout.episodes: 0 is refused by its validator
    result = run_qvl("run", "vla_flow", "rollout", "--episodes", "0", cwd=tmp_path)
    assert result.returncode == 2 and "task.rollout.episodes" in result.stderr and "Traceback" not in result.stderr
    unknown = run_qvl("run", "vla_flow", "rollout", "--colour", "red", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown option '--colour'" in unknown.stderr
    assert "--server" in unknown.stderr
    wrong_command = run_qvl("tasks", "--server", "x")
    assert wrong_command.returncode == 2 and "unrecognized arguments: --server x" in wrong_command.stderr
