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
from qvl.errors import UserError

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{8})$")
BEST = "best"


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
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(to_toml(config), encoding="utf-8")
        tmp.replace(self.config_path)

    def started(self) -> float:
        """When the run started, as recorded in its marker (older runs: the config's mtime)."""
        marker = read_marker(self.path) or {}
        value = marker.get("started")
        return float(value) if isinstance(value, (int, float)) else self.config_path.stat().st_mtime

    def claim(self, task_name: str) -> None:
        """Make this folder a run directory of qvl's; a user's non-empty folder is refused."""
        check_writable(self.path, hint="choose another --run-dir or run_name")
        self.path.mkdir(parents=True, exist_ok=True)
        if read_marker(self.path) is None:
            write_marker(self.path, "run", task=task_name, started=time.time())

    @classmethod
    def new(cls, config: RunConfig) -> RunDir:
        name = config.run_name or f"{config.task_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = Path(config.output_dir) / name
        run = cls(path)
        if path.exists() and any(path.iterdir()):
            if read_marker(path) is not None and not run.checkpoints() and run.best_checkpoint() is None:
                # a run that failed before its first checkpoint: nothing worth keeping, reuse the name
                remove_owned(path)
                return run
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
