"""qvl: fine-tune Qwen-VL models for robot tasks through plugins.

Kept free of heavy imports: ``import qvl`` must not import torch. The public submodules are
attributes of the package all the same (``qvl.build.data_folder(...)``, ``qvl.chat.sft_batch(...)``):
each is imported on first use (PEP 562), so ``qvl --help`` stays fast.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from qvl.cache import cache_dir
from qvl.errors import UserError
from qvl.markers import hookimpl
from qvl.task import Task

__version__ = "0.1.0"

# the modules a plugin may use; everything else under qvl is the core's own
PUBLIC_MODULES = frozenset({
    "answer_probabilities", "backbone", "build", "chat", "config", "data", "decoding", "errors",
    "features", "hookspec", "jsonl", "lerobot", "prepared", "scoring", "shards", "task", "testing",
})

__all__ = ["Task", "UserError", "__version__", "cache_dir", "hookimpl", *sorted(PUBLIC_MODULES)]


def __getattr__(name: str) -> ModuleType:
    if name in PUBLIC_MODULES:
        module = importlib.import_module(f"qvl.{name}")
        globals()[name] = module  # later lookups skip this function
        return module
    raise AttributeError(f"module 'qvl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | PUBLIC_MODULES)
