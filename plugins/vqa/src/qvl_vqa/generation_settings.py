"""The ``[task]`` settings a generation reads, as recorded, and its fingerprint (what the rows depend on)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from qvl_vqa.config import STRATEGIES

if TYPE_CHECKING:
    from qvl_vqa.config import VqaConfig

GENERATOR_VERSION = 1  # of the sampling code: bump when the same settings would give other rows


# The [task] settings (VqaConfig, their one declaration, with the defaults users get) that the rows
# depend on; with the run's seed they are the generation's fingerprint. task.num_workers and
# task.save_batch_size change how the rows are produced, never what they are.
ROW_SETTINGS = ("num_samples", "sample_type_ratio", "strategy_ratio", "max_frames", "eval_mode", "val_fraction",
                "test_fraction")
PRODUCTION_SETTINGS = ("num_workers", "save_batch_size")


def generation_settings(task: VqaConfig, seed: int) -> dict[str, Any]:
    """The generation's settings as recorded in ``generation_config.json``: those of the ``[task]``
    section it reads, and the seed."""
    settings = {name: getattr(task, name) for name in ROW_SETTINGS + PRODUCTION_SETTINGS}
    return {**settings, "seed": seed, "sample_type_ratio": list(task.sample_type_ratio),
            "strategy_ratio": {kind: dict(weights) for kind, weights in task.strategy_ratio.items()}}


def strategy_weights(task: VqaConfig) -> dict[str, dict[str, float]]:
    """Every strategy's weight per sample type (``task.strategy_ratio``: one left out has weight 1,
    0 turns it off); ``eval_mode`` keeps only real quality differences for preference pairs
    (``suboptimal``)."""
    weights = {kind: {name: float(task.strategy_ratio.get(kind, {}).get(name, 1.0)) for name in names}
               for kind, names in STRATEGIES.items()}
    if task.eval_mode:
        weights["preference"] = {name: (weights["preference"]["suboptimal"] if name == "suboptimal" else 0.0)
                                 for name in weights["preference"]}
    return weights


def generation_fingerprint(task: VqaConfig, seed: int, store_root: str,
                           store_fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """What a generated data set depends on (the build folder's fingerprint): the row settings
    (strategy weights resolved: equal weights, equal fingerprint), the seed and the store."""
    content = {name: value for name, value in generation_settings(task, seed).items()
               if name not in PRODUCTION_SETTINGS}
    content["strategy_ratio"] = strategy_weights(task)
    return {"generator": GENERATOR_VERSION, "settings": content, "store_root": str(store_root),
            "store_fingerprint": dict(store_fingerprint)}
