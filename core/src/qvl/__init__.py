"""qvl: fine-tune Qwen-VL models for robot tasks through plugins.

Kept free of heavy imports: ``import qvl`` must not import torch.
"""

from qvl.cache import cache_dir
from qvl.errors import UserError
from qvl.markers import hookimpl
from qvl.task import Task

__version__ = "0.1.0"

__all__ = ["Task", "UserError", "__version__", "cache_dir", "hookimpl"]
