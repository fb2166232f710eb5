"""A run directory: the saved config, checkpoints, metrics, plots and predictions of one run."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import attrs

from qvl.config import ConfigError, RunConfig, read_toml, to_toml

CHECKPOINT_PATTERN = re.compile(r"^step-(\d{8})$")


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
        """Complete checkpoints, oldest first (partial ones live under a dotted temporary name)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
        return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))

    def last_checkpoint(self) -> Path | None:
        checkpoints = self.checkpoints()
        return checkpoints[-1] if checkpoints else None

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

    @classmethod
    def new(cls, config: RunConfig) -> RunDir:
        name = config.run_name or f"{config.task_name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path = Path(config.output_dir) / name
        if path.exists() and any(path.iterdir()):
            raise ConfigError([
                f"run directory {path} already exists; resume it with --run-dir {path} --resume, "
                "or choose another run_name"
            ])
        return cls(path)

    @classmethod
    def latest(cls, output_dir: str, task_name: str) -> RunDir:
        """The most recently written run of ``task_name`` under ``output_dir``."""
        root = Path(output_dir)
        candidates = []
        for config_path in root.glob("*/config.toml") if root.is_dir() else []:
            try:
                data, _ = read_toml(config_path)
            except ConfigError:
                continue
            if data.get("task_name") == task_name:
                candidates.append(config_path.parent)
        if not candidates:
            raise ConfigError([
                f"no run of task {task_name!r} under {root}/; train one first "
                f"(qvl run {task_name} train) or pass --run-dir"
            ])
        return cls(max(candidates, key=lambda p: p.stat().st_mtime))


def eprint(*args: object) -> None:
    print(*args, file=sys.stderr)
