"""Training metrics: ``metrics.jsonl`` always, TensorBoard when installed, a loss-curve PNG."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


class MetricsLog:
    def __init__(self, run_path: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_path / "metrics.jsonl"
        self.started = time.perf_counter()
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_path / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.writer = None

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": step, **values, "elapsed_s": round(time.perf_counter() - self.started, 3)}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(key if "/" in key else f"train/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4), dpi=120)
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
