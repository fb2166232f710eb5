"""qvl: fine-tune Qwen-VL models for robot tasks through plugins.

Kept free of heavy imports: ``import qvl`` must not import torch. The public submodules are
attributes of the package all the same (``qvl.build.data_folder(...)``, ``qvl.chat.sft_batch(...)``):
each is imported on first use (PEP 562), so ``qvl --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from qvl.cache import cache_dir
from qvl.errors import UserError
from qvl.markers import hookimpl, registers
from qvl.task import Task, task_defaults

if TYPE_CHECKING:  # for type checkers; at run time they are imported on first use, below
    from qvl.backbone import Backbone  # noqa: F401
    from qvl.config import RunConfig  # noqa: F401
    from qvl.report import EvalResult  # noqa: F401
    from qvl.samples import Samples  # noqa: F401

__version__ = "0.1.3"

# the modules a plugin may use; everything else under qvl is the core's own
PUBLIC_MODULES = frozenset({
    "answer_probabilities", "backbone", "build", "chat", "config", "data", "decoding", "errors", "export",
    "features", "hookspec", "jsonl", "lerobot", "prepared", "recipes", "report", "samples", "scoring", "shards",
    "task",
    "testing",
})
# classes a plugin names often, at the top level too: its hooks' annotations (``config: qvl.RunConfig``,
# ``backbone: qvl.Backbone``) and results (qvl.Samples, qvl.EvalResult)
PUBLIC_CLASSES = {"Samples": "qvl.samples", "EvalResult": "qvl.report", "RunConfig": "qvl.config",
                  "Backbone": "qvl.backbone"}

__all__ = ["Task", "UserError", "__version__", "cache_dir", "hookimpl", "registers", "task_defaults", *sorted(PUBLIC_CLASSES),
           *sorted(PUBLIC_MODULES)]


def __getattr__(name: str) -> Any:
    if name in PUBLIC_MODULES:
        value: Any = importlib.import_module(f"qvl.{name}")
    elif name in PUBLIC_CLASSES:
        value = getattr(importlib.import_module(PUBLIC_CLASSES[name]), name)
    else:
        raise AttributeError(f"module 'qvl' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | PUBLIC_MODULES | set(PUBLIC_CLASSES))
