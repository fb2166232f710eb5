import os
import sys
from pathlib import Path

import pytest

# Keep the embedded model and tokenizer in one cache for the whole test run (built once, ~10 s).
os.environ.setdefault("QVL_CACHE", str(Path(__file__).resolve().parents[2] / ".venv" / "qvl-cache"))


@pytest.fixture
def colors_task(qvl_host):
    return qvl_host.task("colors")


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    import subprocess

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "qvl", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=600)
