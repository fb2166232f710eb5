"""Each plugin alone with the core, as a user installs them: wheels, a fresh environment, the
plugin's own tests, then its README's commands on its committed example.

    python scripts/isolated_check.py --torch-base .venv-torch [--python python3.11] [PLUGIN ...]

For each plugin (all five by default): build the core's and the plugin's wheels, create a new
virtual environment, install only those two wheels (the plugin's extras: ``test``, and ``sim`` for
vla_flow) and pytest-xdist, check that no other qvl distribution is there and that the code comes
from the wheels, run ``pytest plugins/NAME/tests`` in it, then every ``qvl run NAME ...
--run-dir runs/NAME-example`` command of the plugin's README (train a few steps, eval, predict on
the committed example data) in an empty folder with an empty qvl cache.

torch and torchvision come from ``--torch-base``, a virtual environment that holds only them, through
a ``.pth`` file: qvl-core requires both, so every user's environment has them, and installing their
5 GB of CUDA libraries five more times would cost CI minutes for nothing the check looks at.
Exits 1 naming each plugin that failed and where its log is.

``--floors`` installs every requirement of the two distributions at its lowest allowed version (a
pip constraints file of ``name==floor``), to show that the floors they declare are true; it is
slower (older wheels to fetch) and not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("grasp", "reward", "vqa", "segment", "vla_flow")
MARKER = ".isolated-check"  # in --work: this script made the folder, so it may replace what is inside


class CheckFailed(Exception):
    pass


def run(command: list[str], log: Path, **kwargs) -> str:
    """Run ``command``, appending its output to ``log``; raise CheckFailed with the output's tail."""
    with log.open("a") as handle:
        handle.write(f"\n$ {shlex.join(command)}\n")
    done = subprocess.run(command, capture_output=True, text=True, **kwargs)
    with log.open("a") as handle:
        handle.write(done.stdout + done.stderr)
    if done.returncode:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
        raise CheckFailed(f"`{shlex.join(command)}` exited {done.returncode}:\n{tail}")
    return done.stdout


def site_packages(python: Path | str) -> str:
    return subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()


def readme_example_commands(plugin: str) -> list[list[str]]:
    """The README's ``qvl run PLUGIN ... --run-dir runs/...-example`` commands, continuation lines joined."""
    text = (ROOT / "plugins" / plugin / "README.md").read_text()
    commands, in_block, pending = [], False, ""
    for line in text.splitlines():
        if line.startswith("```"):
            in_block, pending = line.strip() in ("```bash", "```sh", "```console"), ""
            continue
        if not in_block:
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        words, pending = shlex.split(pending, comments=True), ""
        if words[:3] == ["qvl", "run", plugin] and "--run-dir" in words:
            if words[words.index("--run-dir") + 1].endswith("-example"):
                commands.append(words)
    return commands


def build_wheel(source: Path, dist: Path, log: Path) -> Path:
    """The wheel of ``source``, built from a clean copy: setuptools' ``build/`` folder in a checkout can
    hold modules deleted since, which a wheel built there would carry."""
    before = set(dist.glob("*.whl"))
    copy = dist.parent / "sources" / source.name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "tests"))
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist),
         str(copy)], log)
    name = tomllib.loads((source / "pyproject.toml").read_text())["project"]["name"].replace("-", "_")
    (wheel,) = [w for w in dist.glob(f"{name}-*.whl") if w not in before] or sorted(dist.glob(f"{name}-*.whl"))
    return wheel


def test_counts(pytest_output: str) -> dict[str, int]:
    """``{"passed": 98, "skipped": 2}`` from pytest's closing line."""
    lines = [line for line in pytest_output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    return {word: int(number) for number, word in re.findall(r"(\d+) (\w+)", lines[-1])} if lines else {}


def floor_constraints(*projects: dict) -> list[str]:
    """``name==X`` for each ``name>=X`` that the projects require (extras included); torch and
    torchvision come from the base environment, qvl-core from its wheel."""
    from packaging.requirements import Requirement

    pins = {}
    for project in projects:
        requirements = list(project["project"].get("dependencies", []))
        for extra in project["project"].get("optional-dependencies", {}).values():
            requirements += extra
        for text in requirements:
            requirement = Requirement(text)
            if requirement.marker and not requirement.marker.evaluate():
                continue
            if requirement.name in ("torch", "torchvision", "qvl-core"):
                continue
            for spec in requirement.specifier:
                if spec.operator == ">=":
                    pins[requirement.name] = f"{requirement.name}=={spec.version}"
    return sorted(pins.values())


def check_plugin(plugin: str, core_wheel: Path, work: Path, python: str, torch_site: str,
                 floors: bool = False) -> dict[str, float]:
    log = work / f"{plugin}.log"
    log.write_text("")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    project = tomllib.loads((ROOT / "plugins" / plugin / "pyproject.toml").read_text())
    wheel = build_wheel(ROOT / "plugins" / plugin, work / "dist", log)
    env = work / "envs" / plugin
    shutil.rmtree(env, ignore_errors=True)
    run([python, "-m", "venv", str(env)], log)
    env_python = env / "bin" / "python"
    Path(site_packages(env_python), "qvl_torch_base.pth").write_text(torch_site + "\n")
    extras = ",".join(sorted(project["project"].get("optional-dependencies", {})))
    constraints = []
    if floors:
        pins = floor_constraints(tomllib.loads((ROOT / "core" / "pyproject.toml").read_text()), project)
        (work / f"floors-{plugin}.txt").write_text("\n".join(pins) + "\n")
        constraints = ["-c", str(work / f"floors-{plugin}.txt")]
    run([str(env_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *constraints,
         str(core_wheel), f"{wheel}[{extras}]" if extras else str(wheel), "pytest-xdist>=3.5"], log)
    timings["install"] = time.perf_counter() - start

    # only the core and this plugin, both from their wheels, not from this checkout
    names = json.loads(run([str(env_python), "-c", "import importlib.metadata as m, json; "
                            "print(json.dumps(sorted({d.metadata['Name'] for d in m.distributions()})))"], log))
    qvl_names = sorted(n for n in names if n.lower().startswith("qvl-") and n.lower() != "qvl-core")
    if qvl_names != [project["project"]["name"]]:
        raise CheckFailed(f"expected qvl-core and {project['project']['name']} alone, found {qvl_names}")
    package = f"qvl_{plugin}"
    located = run([str(env_python), "-c", f"import qvl, {package}; print(qvl.__file__); print({package}.__file__)"],
                  log, cwd=work).split()
    if not all(path.startswith(str(env)) for path in located):
        raise CheckFailed(f"imported from outside the environment: {located}")
    shown = json.loads(run([str(env / "bin" / "qvl"), "plugins"], log, cwd=work))
    outside = sorted({p["distribution"] for p in shown["plugins"]} - {"qvl-core", project["project"]["name"]})
    if outside:
        raise CheckFailed(f"qvl plugins lists distributions that were not installed: {outside}")

    start = time.perf_counter()
    output = run([str(env_python), "-m", "pytest", f"plugins/{plugin}/tests", "-q", "-n", "2", "-p",
                  "no:cacheprovider"], log, cwd=ROOT,
                 env={**os.environ, "QVL_CACHE": str(work / "cache" / f"{plugin}-tests")})
    counts = test_counts(output)
    if not counts.get("passed"):
        raise CheckFailed(f"pytest ran no test of plugins/{plugin}/tests")
    timings["tests"] = time.perf_counter() - start
    timings.update({f"tests {word}": number for word, number in counts.items()})

    # the README's commands on the committed example, in an empty folder with an empty cache
    start = time.perf_counter()
    folder = work / "users" / plugin
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "plugins").symlink_to(ROOT / "plugins")
    commands = readme_example_commands(plugin)
    if not any(c[3] == "train" for c in commands) or not any(c[3] == "eval" for c in commands):
        raise CheckFailed(f"plugins/{plugin}/README.md has no train and eval command on its example")
    for words in commands:
        run([str(env / "bin" / "qvl"), *words[1:]], log, cwd=folder,
            env={**os.environ, "QVL_CACHE": str(work / "cache" / f"{plugin}-user")})
    run_dir = folder / commands[0][commands[0].index("--run-dir") + 1]
    if not list(run_dir.glob("eval/*/eval.json")):
        raise CheckFailed(f"the README's eval wrote no {run_dir}/eval/SPLIT/eval.json")
    timings["commands"] = time.perf_counter() - start
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plugins", nargs="*", metavar="PLUGIN", help=f"some of {', '.join(PLUGINS)} (default: all)")
    parser.add_argument("--torch-base", required=True, type=Path,
                        help="a virtual environment holding only torch and torchvision")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the new environments")
    parser.add_argument("--floors", action="store_true",
                        help="install every requirement at its declared floor (name>=X -> name==X)")
    parser.add_argument("--work", type=Path, default=ROOT / ".isolated", help="environments, wheels and logs")
    args = parser.parse_args()
    unknown = sorted(set(args.plugins) - set(PLUGINS))
    if unknown:
        parser.error(f"unknown plugins {unknown}; choose among {', '.join(PLUGINS)}")

    work = args.work.resolve()
    # environments and copies under --work are removed and rebuilt: only in a folder this script made
    if work.is_dir() and any(work.iterdir()) and not (work / MARKER).is_file():
        parser.error(f"--work {work}: a non-empty folder this script did not make; choose another")
    (work / "dist").mkdir(parents=True, exist_ok=True)
    (work / MARKER).touch()
    torch_site = site_packages(args.torch_base / "bin" / "python")
    core_wheel = build_wheel(ROOT / "core", work / "dist", work / "core.log")
    failed, passed = [], 0
    for plugin in args.plugins or PLUGINS:
        print(f"isolated check: qvl-core + {plugin} ...", flush=True)
        try:
            timings = check_plugin(plugin, core_wheel, work, args.python, torch_site, args.floors)
        except CheckFailed as exc:
            failed.append(plugin)
            print(f"  FAILED ({work / f'{plugin}.log'}): {exc}", flush=True)
            continue
        passed += int(timings.get("tests passed", 0))
        print(f"  {plugin}: {timings.get('tests passed', 0):.0f} tests passed, "
              f"{timings.get('tests skipped', 0):.0f} skipped; install {timings['install']:.0f} s, tests "
              f"{timings['tests']:.0f} s, README commands {timings['commands']:.0f} s", flush=True)
    if failed:
        print(f"isolated check failed for: {', '.join(failed)}")
        return 1
    print(f"each plugin alone with the core: {len(args.plugins or PLUGINS)} plugins")
    print(f"isolated: {passed} passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
