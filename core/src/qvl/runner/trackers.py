"""Experiment trackers a lab already uses (``train.report_to``): MLflow, Weights & Biases, Trackio.

They go through accelerate's tracker classes (what ``Accelerator(log_with=...)`` builds), so each
reads its own usual settings: ``MLFLOW_TRACKING_URI`` / ``MLFLOW_EXPERIMENT_NAME``, ``WANDB_MODE`` /
``WANDB_PROJECT``, and so on. TensorBoard stays with :class:`qvl.runner.metrics.MetricsLog`, which
cuts its events back on ``--resume``. Each tracker gets the run's settings once (flattened,
``train.lr``), every logged step, and the run's pictures (the loss curve, the validation charts) at
the end. The run id of each tracker is kept in the run folder (``trackers.json``), so ``--resume``
continues the same tracked run rather than starting a second one.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from qvl.errors import UserError

# report_to name -> (accelerate.tracking class, the package it needs)
TRACKERS = {"mlflow": ("MLflowTracker", "mlflow"), "wandb": ("WandBTracker", "wandb"),
            "trackio": ("TrackioTracker", "trackio")}
IDS_FILE = "trackers.json"


def flat_settings(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": 1e-4}``; lists as JSON text (trackers take scalars)."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


class Trackers:
    """The trackers ``report_to`` names beyond TensorBoard, started on the main process."""

    def __init__(self, report_to: list[str], run_path: Path, experiment: str, settings: dict[str, Any],
                 resume: bool) -> None:
        self.active: list[tuple[str, Any]] = []
        self.ids_path = run_path / IDS_FILE
        previous = self._previous_ids() if resume else {}
        for name in report_to:
            if name not in TRACKERS:
                continue
            class_name, package = TRACKERS[name]
            if importlib.util.find_spec(package) is None:
                raise UserError(f"train.report_to includes {name!r}, but {package} is not installed: "
                                f"pip install {package} (or leave {name!r} out of train.report_to)")
            import accelerate
            import accelerate.tracking

            tracker_class = getattr(accelerate.tracking, class_name, None)
            if tracker_class is None:
                raise UserError(f"train.report_to = {name!r} needs a newer accelerate than {accelerate.__version__} "
                                f"(it has no {class_name})")
            try:
                tracker = self._make(name, tracker_class, run_path, experiment, previous.get(name))
                start = getattr(tracker, "start", None)
                if start is not None:  # accelerate >= 1.8 starts a tracker apart from making it
                    start()
                if previous.get(name) is None:  # a resumed run already holds its settings
                    tracker.store_init_configuration(settings)
            except Exception as exc:  # the tracker's own settings (URI, login, store): the user's to fix
                self.finish()
                reason = str(exc).splitlines()[0] if str(exc) else ""
                raise UserError(f"train.report_to = {name!r}: {package} could not start a run "
                                f"({type(exc).__name__}: {reason})") from None
            self.active.append((name, tracker))
        if self.active:
            self._save_ids()

    @staticmethod
    def _make(name: str, tracker_class: Any, run_path: Path, experiment: str, previous_id: str | None) -> Any:
        if name == "mlflow":
            return tracker_class(experiment_name=experiment, run_name=run_path.name, run_id=previous_id)
        # accelerate's WandBTracker and TrackioTracker take the *project* first (wandb.init(project=...)
        # and trackio.init(project=...)); the run's name is a keyword
        if name == "wandb":
            kwargs: dict[str, Any] = {"name": run_path.name, "dir": str(run_path)}
            if previous_id:
                kwargs.update(id=previous_id, resume="allow")
            return tracker_class(experiment, **kwargs)
        # trackio finds a run to resume by its name within the project
        return tracker_class(experiment, name=run_path.name, resume="allow" if previous_id else "never")

    def _previous_ids(self) -> dict[str, str]:
        try:
            data = json.loads(self.ids_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    def _save_ids(self) -> None:
        from qvl.data import write_json

        ids = {}
        for name, tracker in self.active:
            run = tracker.tracker
            # MLflow's run id, W&B's run id, trackio's run name (how each resumes a run)
            identifier = (getattr(getattr(run, "info", None), "run_id", None) or getattr(run, "id", None)
                          or getattr(run, "name", None))
            if isinstance(identifier, str):
                ids[name] = identifier
        write_json(self.ids_path, ids, indent=1)

    def log(self, step: int, values: dict[str, float]) -> None:
        """``values`` named as in TensorBoard (``train/loss``, ``val/...``)."""
        for _, tracker in self.active:
            tracker.log(values, step=step)

    def log_pictures(self, paths: list[Path], step: int) -> None:
        """PNGs a person would look at (the loss curve, validation charts), where the tracker takes them."""
        paths = [p for p in paths if p.is_file()]
        for name, tracker in self.active:
            if name == "mlflow":
                for path in paths:
                    tracker.log_artifact(str(path), artifact_path="pictures")
            elif name == "wandb":
                from PIL import Image

                tracker.log_images({p.stem: [Image.open(p).convert("RGB")] for p in paths}, step=step)

    def finish(self) -> None:
        for _, tracker in self.active:
            tracker.finish()
        self.active = []
