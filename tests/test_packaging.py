"""The core as a user gets it from a wheel, not from this checkout."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_the_wheel_carries_templates_entry_points_and_runs(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), os.path.join(root, "core")], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("qvl_core-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site), "QVL_CACHE": str(tmp_path / "cache")}
    code = ("import json, qvl, qvl.backbone.embedded as e\n"
            "from qvl.backbone.loading import load\nfrom qvl.config import BackboneConfig\n"
            "b = load(BackboneConfig(finetune='frozen'))\n"
            "print(json.dumps({'file': qvl.__file__, 'template': len(e.chat_template('qwen3_vl').encode()),"
            " 'ids': b.tokenizer('<|image_pad|>').input_ids}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["file"].startswith(str(site))
    assert found["template"] == 5292 and found["ids"] == [151655]
    # the built-in task comes from the wheel (entry-point plugins of the test venv left out)
    tasks = subprocess.run([sys.executable, "-m", "qvl", "tasks"], env={**env, "QVL_LOAD_PLUGINS": ""},
                           capture_output=True, text=True, check=True)
    assert [t["name"] for t in json.loads(tasks.stdout)] == ["colors", "sft"]


@pytest.mark.parametrize("plugin", ["grasp", "reward", "vqa", "segment", "vla_flow"])
def test_a_plugin_wheel_carries_its_defaults_and_registers_its_task_from_the_wheel(plugin, tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for source in ("core", os.path.join("plugins", plugin)):
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path / "dist"), os.path.join(root, source)], check=True, capture_output=True)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                    *map(str, (tmp_path / "dist").glob("*.whl"))], check=True, capture_output=True)
    package = f"qvl_{plugin}"
    assert (site / package / "defaults.toml").is_file()
    env = {**os.environ, "PYTHONPATH": str(site), "QVL_LOAD_PLUGINS": plugin}
    from_wheel = subprocess.run([sys.executable, "-m", "qvl", "config", plugin], env=env, capture_output=True,
                                text=True, check=True)
    located = subprocess.run([sys.executable, "-c", f"import {package}; print({package}.__file__)"], env=env,
                             capture_output=True, text=True, check=True)
    assert located.stdout.strip().startswith(str(site))
    from_checkout = subprocess.run([sys.executable, "-m", "qvl", "config", plugin],
                                   env={**os.environ, "QVL_LOAD_PLUGINS": plugin}, capture_output=True, text=True,
                                   check=True)
    assert from_wheel.stdout == from_checkout.stdout and "[train]" in from_wheel.stdout
