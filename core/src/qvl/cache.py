"""Where qvl keeps what it builds once: embedded backbones, synthetic data sets."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "QVL_CACHE"


def cache_dir() -> Path:
    """``$QVL_CACHE``, or ``~/.cache/qvl``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "qvl")
