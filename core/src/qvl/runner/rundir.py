"""A run directory: the saved config, checkpoints, metrics, plots and predictions of one run.

Every run directory carries qvl's marker (``.qvl.json``, kind ``run``) with the time the run
started; that time, not a file's mtime, decides which run is the newest.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import attrs

from qvl.build import check_writable, read_marker, remove_owned, write_marker
from qvl.config import ConfigError, RunConfig, read_toml, to_toml
from qvl.data import write_text
from qvl.errors import UserError

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{8})$")
BEST = "best"
RUN_KIND = "run"
# What a run writes at the top of its folder before its first checkpoint: a failed run holding
# only these may be removed to reuse its name; anything else there was put there by someone.
RUN_ENTRIES = frozenset({".qvl.json", "config.toml", "metrics.jsonl", "samples", "tensorboard", "checkpoints",
                         "validation", "loss.png", "trackers.json", "wandb"})


@attrs.define
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def checkpoints(self) -> list[Path]:
        """Complete step checkpoints, oldest first (partial ones live under a dotted temporary name)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
        return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))

    def last_checkpoint(self) -> Path | None:
        checkpoints = self.checkpoints()
        return checkpoints[-1] if checkpoints else None

    def best_checkpoint(self) -> Path | None:
        best = self.checkpoints_dir / BEST
        return best if best.is_dir() else None

    def checkpoint(self, which: str | None = None) -> Path | None:
        """``best``, ``last``, ``step-N``, or None: the best when the run kept one, else the last."""
        if which is None:
            return self.best_checkpoint() or self.last_checkpoint()
        if which == BEST:
            found = self.best_checkpoint()
            if found is None:
                raise UserError(f"{self.path}: --checkpoint best, but the run kept no best checkpoint "
                                "(train with train.eval_every > 0); use --checkpoint last")
            return found
        if which == "last":
            return self.last_checkpoint()
        match = re.fullmatch(r"step-(\d+)", which)
        if match is None:
            raise UserError(f"--checkpoint {which!r}: expected best, last or step-N")
        path = self.checkpoints_dir / f"step-{int(match.group(1)):08d}"
        if not path.is_dir():
            kept = ", ".join(p.name for p in self.checkpoints()) or "none"
            raise UserError(f"{path}: no such checkpoint; kept: {kept}{', best' if self.best_checkpoint() else ''}")
        return path

    def saved_config(self) -> dict:
        if not self.config_path.is_file():
            raise ConfigError([f"{self.path}: not a qvl run directory (no config.toml)"])
        data, _ = read_toml(self.config_path)
        return data

    def write_config(self, config: RunConfig) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(self.config_path, to_toml(config))

    def started(self) -> float:
        """When the run started, as recorded in its marker (older runs: the config's mtime)."""
        marker = read_marker(self.path) or {}
        value = marker.get("started")
        return float(value) if isinstance(value, (int, float)) else self.config_path.stat().st_mtime

    def claim(self, task_name: str) -> None:
        """Make this folder a run directory of qvl's; a user's non-empty folder, another kind of
        folder qvl wrote (a data set) and a run of another task are refused."""
        check_writable(self.path, hint="choose another --run-dir or run_name")
        marker = read_marker(self.path) if self.path.is_dir() else None
        if marker is not None and marker.get("kind") != RUN_KIND:
            raise UserError(f"{self.path}: a {marker.get('kind')} folder qvl wrote, not a run directory; "
                            "nothing was changed; choose another --run-dir or run_name")
        self.check_task(task_name, "train")
        self.path.mkdir(parents=True, exist_ok=True)
        if marker is None:
            write_marker(self.path, RUN_KIND, task=task_name, started=time.time())

    def task_name(self) -> str | None:
        """The task this run was trained for (its saved config, else its marker); ``None`` when
        the folder is not a run directory of qvl's."""
        if self.config_path.is_file():
            try:
                name = self.saved_config().get("task_name")
            except ConfigError:
                name = None
            if isinstance(name, str) and name:
                return name
        marker = read_marker(self.path) if self.path.is_dir() else None
        name = marker.get("task") if marker is not None and marker.get("kind") == RUN_KIND else None
        return name if isinstance(name, str) and name else None

    def check_task(self, task_name: str, stage: str) -> None:
        """Refuse to run ``stage`` of ``task_name`` on a run of another task: its saved config would
        only give a list of keys the other task does not know."""
        owner = self.task_name()
        if owner is not None and owner != task_name:
            raise UserError(f"{self.path}: this run belongs to task {owner!r}, not {task_name!r}; "
                            f"use 'qvl run {owner} {stage} --run-dir {self.path}', or another --run-dir")

    @classmethod
    def new(cls, config: RunConfig) -> RunDir:
        name = config.run_name or f"{config.task_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = Path(config.output_dir) / name
        run = cls(path)
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            marker = read_marker(path) if path.is_dir() else None
            if marker is None or marker.get("kind") != RUN_KIND:
                # a user's folder (or a data set qvl wrote): --resume would be refused too
                raise ConfigError([f"run_name {name!r}: {path} already exists and is not a qvl run directory; "
                                   "choose another run_name or output_dir"])
            owner = run.task_name()
            if owner is not None and owner != config.task_name:
                raise ConfigError([f"run_name {name!r}: {path} is a run of task {owner!r}; "
                                   "choose another run_name or output_dir"])
            if not run.checkpoints() and run.best_checkpoint() is None:
                # a run that failed before its first checkpoint: nothing worth keeping, reuse the name,
                # unless someone put files of their own into it
                foreign = sorted(p.name for p in path.iterdir() if p.name not in RUN_ENTRIES)
                if not foreign:
                    remove_owned(path)
                    return run
                raise ConfigError([f"run directory {path} (a run that stopped before its first checkpoint) holds "
                                   f"files qvl did not write ({', '.join(foreign[:3])}); nothing was changed; move "
                                   "them out of it, or choose another run_name"])
            raise ConfigError([
                f"run directory {path} already exists; resume it with --run-dir {path} --resume, "
                "or choose another run_name"
            ])
        return run

    @classmethod
    def latest(cls, output_dir: str, task_name: str) -> RunDir:
        """The run of ``task_name`` under ``output_dir`` that started last."""
        root = Path(output_dir)
        candidates = []
        for config_path in root.glob("*/config.toml") if root.is_dir() else []:
            try:
                data, _ = read_toml(config_path)
            except ConfigError:
                continue
            if data.get("task_name") == task_name:
                candidates.append(cls(config_path.parent))
        if not candidates:
            raise ConfigError([
                f"no run of task {task_name!r} under {root}/; train one first "
                f"(qvl run {task_name} train) or pass --run-dir"
            ])
        return max(candidates, key=lambda run: run.started())


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr)
