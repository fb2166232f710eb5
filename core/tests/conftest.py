import os
from pathlib import Path

import pytest

# Keep the embedded model and tokenizer in one cache for the whole test run (built once, ~10 s).
os.environ.setdefault("QVL_CACHE", str(Path(__file__).resolve().parents[2] / ".venv" / "qvl-cache"))


@pytest.fixture
def colors_task(qvl_host):
    return qvl_host.task("colors")

