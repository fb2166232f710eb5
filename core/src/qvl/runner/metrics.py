"""Training metrics: ``metrics.jsonl`` always, TensorBoard when installed, a loss-curve PNG; and
the per-step sample record (``samples/rank-N.jsonl``).

Both JSONL files reach the disk line by line, so ``kill -9`` loses no finished step, and a run
that starts (again) from step N first cuts them back to what happened up to step N: a resumed
run, or one restarted without a checkpoint, continues one history instead of repeating steps.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from qvl.data import write_text
from qvl.errors import is_out_of_space, out_of_space


class MetricsLog:
    """``metrics.jsonl`` (and TensorBoard) of a run that starts at ``start_step``: what an earlier
    attempt logged after that step is dropped first."""

    def __init__(self, run_path: Path, enabled: bool, start_step: int = 0, tensorboard: bool = True,
                 trackers: Any = None):
        self.enabled = enabled
        self.path = run_path / "metrics.jsonl"
        self.started = time.perf_counter()
        self.writer = None
        self.trackers = trackers  # qvl.runner.trackers.Trackers: MLflow, W&B, Trackio
        if enabled:
            # records of step N were logged before checkpoint N was saved: they belong to its history
            truncate_jsonl(self.path, lambda record: _step(record) <= start_step)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                # TensorBoard drops the events of earlier files from purge_step on
                self.writer = SummaryWriter(str(run_path / "tensorboard"), purge_step=start_step + 1)
            except ImportError:  # tensorboard is optional
                self.writer = None

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **values, "elapsed_s": round(time.perf_counter() - self.started, 3)}
        with self.path.open("a", encoding="utf-8") as handle:
            append_record(handle, self.path, record, f"the metrics of step {step}", "a few hundred bytes")
        named = {key if "/" in key else f"train/{key}": value for key, value in values.items()}
        if self.writer is not None:
            for key, value in named.items():
                self.writer.add_scalar(key, value, step)
            self.writer.flush()  # else events wait up to two minutes in memory, lost to a kill -9
        if self.trackers is not None:
            self.trackers.log(step, named)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class SamplesLog:
    """``samples/rank-N.jsonl``: the ids in each batch one process trained on, a line per batch.

    Each line is flushed as it is written. A record's ``step`` is the optimizer step the batch
    went into (counted from 0), so a run starting at ``start_step`` keeps the records below it.
    """

    def __init__(self, path: Path, start_step: int = 0):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        truncate_jsonl(path, lambda record: _step(record) < start_step)
        self.handle = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        append_record(self.handle, self.path, record, f"the samples of step {record.get('step')}", "a few kB")

    def close(self) -> None:
        try:
            self.handle.close()
        except OSError:  # a full disk, already reported by write()
            pass


def append_record(handle: IO[str], path: Path, record: dict[str, Any], what: str, needed: str) -> None:
    """One JSON line onto an open log, flushed; a full disk is one line naming ``path`` (exit 2)."""
    try:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
    except OSError as exc:
        if is_out_of_space(exc):
            raise out_of_space(path, what, needed=needed, kept="the last complete checkpoint is kept; free some "
                                                               "space and continue with --resume") from exc
        raise


def truncate_jsonl(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Keep the records of ``path`` that ``keep`` accepts, in order; the file is replaced whole
    (written beside, renamed), so a kill during the cut leaves the old or the new file. A torn last
    line (a write cut short by ``kill -9``) is dropped. A missing file is left missing."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        return
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and line.endswith("\n") and keep(record):
            kept.append(line)
    if len(kept) == len(lines):
        return
    write_text(path, "".join(kept))


def _step(record: dict[str, Any]) -> float:
    step = record.get("step")
    return step if isinstance(step, (int, float)) else float("inf")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss(metrics_path: Path, out: Path, title: str) -> Path | None:
    """Training loss terms, and the validation loss when there is one, against step, as a PNG."""
    records = read_metrics(metrics_path)
    train = [r for r in records if "loss" in r]
    if not train:
        return None
    from qvl.report import pyplot

    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    keys = [k for k in train[-1] if k == "loss" or (k.startswith("loss_") and k != "loss")]
    for key in keys:
        axis.plot([r["step"] for r in train], [r.get(key, float("nan")) for r in train], label=key, linewidth=1.6)
    validation = [r for r in records if "val/loss" in r]
    if validation:
        axis.plot([r["step"] for r in validation], [r["val/loss"] for r in validation], "o-", label="val/loss",
                  linewidth=1.6)
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if len(keys) > 1 or validation:
        axis.legend()
    figure.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    figure.savefig(tmp)
    plt.close(figure)
    tmp.replace(out)
    return out
