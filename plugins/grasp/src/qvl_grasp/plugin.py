"""The ``grasp`` task: its config, and the qvl hooks that run it (entry point ``qvl.grasp``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

import qvl
from qvl.config import fraction, non_negative, positive
from qvl_grasp.augment import AugmentConfig

if TYPE_CHECKING:
    from qvl.backbone import Backbone
    from qvl.config import RunConfig

TASK_NAME = "grasp"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _model_size(instance: Any, attribute: attrs.Attribute, value: list[int]) -> None:
    if len(value) != 2 or any(v < 32 or v % 32 for v in value):
        raise ValueError(f"'{attribute.name}' must be [width, height], multiples of 32 (the merged "
                         f"patch size of Qwen3-VL), at least 32; got {value}")


@attrs.define
class SyntheticConfig:
    """The embedded default data set (``qvl run grasp make-data``)."""

    width: int = attrs.field(default=640, validator=positive)
    height: int = attrs.field(default=480, validator=positive)
    train: int = attrs.field(default=800, validator=positive)
    val: int = attrs.field(default=100, validator=positive)
    test: int = attrs.field(default=100, validator=positive)
    position_jitter: float = attrs.field(default=0.12, validator=fraction)
    orientations: int = attrs.field(default=0, validator=non_negative)


@attrs.define
class EnsembleConfig:
    """Test-time ensemble: ``H`` crops per image, averaged (circular mean for the angle)."""

    eval: int = attrs.field(default=1, validator=positive)
    predict: int = attrs.field(default=4, validator=positive)
    crop: float = attrs.field(default=0.95, validator=fraction)


@attrs.define
class GraspConfig:
    data_format: Literal["ocid", "cornell", "jacquard"] = "ocid"
    data_dir: str = ""  # empty: the embedded synthetic OCID-format data, rendered on first use
    split_files: dict[str, str] = attrs.field(
        factory=lambda: {"train": "training_0.txt", "val": "validation_0.txt", "test": "test_0.txt"})
    synthetic: SyntheticConfig = attrs.field(factory=SyntheticConfig)
    model_image_size: list[int] = attrs.field(factory=lambda: [96, 64], validator=_model_size)
    target: Literal["central", "first", "random"] = "central"
    augment: AugmentConfig = attrs.field(factory=AugmentConfig)
    constrained: bool = True
    loss_vocabulary: Literal["answer", "full"] = "answer"
    ensemble: EnsembleConfig = attrs.field(factory=EnsembleConfig)
    max_new_tokens: int = attrs.field(default=32, validator=positive)
    system_prompt: str = "You are a robot grasp planner."
    instruction: str = "Give the grasp rectangle as five integers: cx cy theta w h."
    eval_pictures: int = attrs.field(default=8, validator=non_negative)


def synthetic_spec(config: RunConfig) -> Any:
    from qvl_grasp.synthetic import SceneSpec

    s = config.task.synthetic
    return SceneSpec(width=s.width, height=s.height, train=s.train, val=s.val, test=s.test, seed=config.seed,
                     position_jitter=s.position_jitter, orientations=s.orientations)


def data_root(config: RunConfig, *, create: bool) -> Path:
    """The data set's folder; the embedded one is rendered here the first time it is needed."""
    if config.task.data_dir:
        return Path(config.task.data_dir).expanduser()
    root = qvl.cache_dir() / "datasets" / synthetic_spec(config).key()
    if create:
        render_synthetic(root, config)
    return root


def render_synthetic(root: Path, config: RunConfig) -> Path:
    """Render the synthetic data set into ``root`` once (reused while its settings are unchanged).

    Only a folder qvl wrote is ever replaced; a user's non-empty folder is refused untouched.
    """
    from qvl.build import build_directory, read_marker
    from qvl_grasp.synthetic import write_dataset

    spec = synthetic_spec(config)
    fingerprint = {"format": "ocid-synthetic", **attrs.asdict(spec)}
    if (read_marker(root) or {}).get("fingerprint") != fingerprint:
        print(f"qvl-grasp: rendering the synthetic OCID-Grasp data set into {root}", file=sys.stderr)
    return build_directory(root, lambda out: write_dataset(out, spec), kind="dataset", fingerprint=fingerprint,
                           hint="choose another task.data_dir", info={"plugin": "qvl-grasp"})


def make_data(config: RunConfig) -> Path:
    """Stage ``make-data``: render the synthetic data set (into ``task.data_dir`` when set)."""
    spec = synthetic_spec(config)
    root = render_synthetic(data_root(config, create=False), config)
    print(f"qvl-grasp: {spec.train} train, {spec.val} val, {spec.test} test images in OCID-Grasp layout: {root}")
    if config.task.data_dir:
        print(f"  train on it with: --set task.data_dir={str(root)!r}")
    return root


TASK = qvl.Task(
    name=TASK_NAME,
    config_class=GraspConfig,
    description="Grasp rectangles (cx cy theta w h) from one image, as constrained integers; "
                "OCID-Grasp / Cornell / Jacquard",
    defaults={
        # the loss reads 12 rows of the LM head; freezing the 151,936-row embedding makes a CPU step
        # about 4x faster on the tiny backbone
        "backbone": {"finetune": "full", "freeze_embeddings": True},
        # tuned for the tiny model on the embedded data (see the README): it learns the object's
        # orientation suddenly after about 1,500 steps, so it needs this many
        "train": {"steps": 4000, "batch_size": 8, "lr": 2e-3, "warmup_steps": 50, "log_every": 50,
                  "weight_decay": 0.01, "save_every": 1000},
        "task": {"synthetic": {"orientations": 4, "position_jitter": 0.06}, "augment": {"rotation_degrees": 0.0}},
        "eval": {"batch_size": 16},
        "predict": {"batch_size": 8},
    },
    stages={"make-data": make_data},
)


@qvl.hookimpl
def register_tasks(register: Any) -> None:
    register(TASK)


def image_inputs(path: Path) -> list[dict[str, Any]]:
    """Samples for ``predict.input``: one image, or every image of a folder."""
    from qvl_grasp.readers import GraspDataError, load_image

    if not path.exists():
        raise GraspDataError(f"predict.input = {str(path)!r}: no such file or folder")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise GraspDataError(f"predict.input = {str(path)!r}: no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [{"id": file.name, "image": load_image(file), "grasps": None, "mask": None} for file in files]


@qvl.hookimpl
def build_dataset(task: qvl.Task, config: RunConfig, split: str) -> Any:
    if task.name != TASK_NAME:
        return None
    from qvl_grasp.readers import read_split

    if split == "predict":
        if config.predict.input:
            return image_inputs(Path(config.predict.input))
        split = config.predict.split
    root = data_root(config, create=True)
    return read_split(config.task.data_format, root, split, config.task.split_files)


@qvl.hookimpl
def build_collator(task: qvl.Task, config: RunConfig, backbone: Backbone, stage: str) -> Any:
    if task.name != TASK_NAME:
        return None
    from qvl_grasp.collate import EnsembleCollator, TrainCollator

    if stage == "train":
        return TrainCollator(config.task, backbone.processor, seed=config.seed)
    members = config.task.ensemble.eval if stage == "eval" else config.task.ensemble.predict
    return EnsembleCollator(config.task, backbone.processor, members=members, seed=config.seed)


@qvl.hookimpl
def loss(task: qvl.Task, config: RunConfig, backbone: Backbone, batch: dict[str, Any]) -> dict[str, Any] | None:
    if task.name != TASK_NAME:
        return None
    if config.task.loss_vocabulary == "full":
        from qvl import chat

        return chat.lm_loss(backbone.model, batch)
    from qvl_grasp.answer_loss import answer_vocabulary_loss

    return answer_vocabulary_loss(backbone.model, backbone.tokenizer, batch)


@qvl.hookimpl
def decode(task: qvl.Task, config: RunConfig, backbone: Backbone, batch: dict[str, Any]) -> list[dict] | None:
    if task.name != TASK_NAME:
        return None
    from qvl_grasp.collate import decode_batch

    return decode_batch(config.task, backbone, batch)


@qvl.hookimpl
def evaluate(task: qvl.Task, config: RunConfig, predictions: list[dict], dataset: Any,
             out_dir: Path) -> dict[str, Any] | None:
    if task.name != TASK_NAME:
        return None
    from qvl_grasp.report import evaluate_predictions

    return evaluate_predictions(config, predictions, dataset, Path(out_dir))


@qvl.hookimpl
def report_predictions(task: qvl.Task, config: RunConfig, predictions: list[dict], dataset: Any,
                       out_dir: Path) -> dict[str, Any] | None:
    if task.name != TASK_NAME:
        return None
    from qvl_grasp.report import write_grasps

    return write_grasps(config, predictions, dataset, Path(out_dir))
