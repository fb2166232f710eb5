"""pytest fixtures for qvl plugin authors, registered through the ``pytest11`` entry point.

Installing qvl-core makes them available in any test suite::

    def test_my_task_trains(qvl_run_stage):
        result = qvl_run_stage("my-task", "train", *qvl_quick_run)
        assert result.steps == 2

Nothing here imports torch at import time, so collecting tests stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# Overrides that make any task's run finish in seconds on a CPU.
QUICK_RUN = (
    "train.steps=2",
    "train.batch_size=2",
    "train.log_every=1",
    "train.warmup_steps=0",
    "eval.batch_size=2",
    "eval.max_samples=4",
    "predict.batch_size=2",
    "predict.max_samples=4",
)


def folder_snapshot(folder: Path) -> list[tuple[str, bytes | None]]:
    """Every path below ``folder`` with its bytes (``None`` for a folder), sorted: two equal
    snapshots prove that a stage left a user's folder exactly as it was."""
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None) for p in folder.rglob("*"))


@pytest.fixture(scope="session")
def qvl_quick_run() -> tuple[str, ...]:
    """``--set`` overrides for a two-step run on a handful of samples."""
    return QUICK_RUN


@pytest.fixture(scope="session")
def qvl_host() -> Any:
    """The plugin host (plugin manager, registered tasks, load errors) as the CLI builds it."""
    from qvl.plugins import load_plugins

    return load_plugins()


@pytest.fixture(scope="session")
def qvl_tiny_backbone() -> Any:
    """The embedded tiny Qwen3-VL, frozen, loaded once per test session."""
    from qvl.backbone.loading import load
    from qvl.config import BackboneConfig

    return load(BackboneConfig(name="embedded:qwen3-vl-tiny", finetune="frozen"))


@pytest.fixture
def qvl_run_dir(tmp_path: Path) -> Path:
    """A fresh run directory for one test."""
    return tmp_path / "run"


@pytest.fixture
def qvl_run_stage(qvl_host: Any, qvl_run_dir: Path) -> Callable[..., Any]:
    """Run one stage end to end in this process: ``qvl_run_stage(task, stage, *overrides)``.

    Every stage of one test shares ``qvl_run_dir``, so ``train`` then ``eval`` then ``predict``
    work as they do from the command line. Keyword arguments: ``config_files``, ``resume``,
    ``predict_input``, ``save_vis``, ``run_dir``, ``checkpoint``.
    """
    from qvl.runner.stages import run_stage

    def run(task: str, stage: str, *overrides: str, config_files: tuple = (), resume: bool = False,
            predict_input: str | None = None, save_vis: bool = False, run_dir: Path | None = None,
            checkpoint: str | None = None) -> Any:
        return run_stage(qvl_host, task, stage, config_files=config_files, overrides=overrides,
                         run_dir=run_dir or qvl_run_dir, resume=resume, predict_input=predict_input,
                         save_vis=save_vis, checkpoint=checkpoint)

    return run
