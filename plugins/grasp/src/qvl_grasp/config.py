"""The ``[task]`` settings of the grasp task."""

from __future__ import annotations

import math
from typing import Any, Literal

import attrs

from qvl.config import fraction, non_negative, positive
from qvl_grasp.augment import AugmentConfig


def _model_size(instance: Any, attribute: attrs.Attribute, value: list[int]) -> None:
    if len(value) != 2 or any(v < 32 or v % 32 for v in value):
        raise ValueError(f"'{attribute.name}' must be [width, height], multiples of 32 (the merged "
                         f"patch size of Qwen3-VL), at least 32; got {value}")


def _split_ratios(instance: Any, attribute: attrs.Attribute, value: list[float]) -> None:
    if len(value) != 3 or any(v < 0 for v in value) or not math.isclose(sum(value), 1.0, abs_tol=1e-6):
        raise ValueError(f"'{attribute.name}' must be three non-negative shares [train, val, test] that sum "
                         f"to 1, e.g. [0.8, 0.1, 0.1]; got {value}")


def _object_count(instance: Any, attribute: attrs.Attribute, value: list[int]) -> None:
    if len(value) != 2 or not 1 <= value[0] <= value[1] <= 8:
        raise ValueError(f"'{attribute.name}' must be [fewest, most] objects per scene, 1 <= fewest <= most "
                         f"<= 8, e.g. [2, 5]; got {value}")


@attrs.define
class SyntheticConfig:
    """The embedded default data set (``qvl run grasp make-data``)."""

    # multi: several objects, the instruction names one (mugs, pans, T- and L-shapes among them, grasped
    # at a part); single: one object across its principal axis. Single stays the default until the
    # embedded tiny model learns multi on 2 CPU cores: 6,000 steps reach 0.00 success there (docs/results.md)
    scene: Literal["multi", "single"] = "single"
    objects: list[int] = attrs.field(factory=lambda: [2, 5], validator=_object_count)  # multi: per scene
    position_jitter: float = attrs.field(default=0.12, validator=fraction)  # single only
    orientations: int = attrs.field(default=0, validator=non_negative)
    width: int = attrs.field(default=640, validator=positive)
    height: int = attrs.field(default=480, validator=positive)
    train: int = attrs.field(default=800, validator=positive)
    val: int = attrs.field(default=100, validator=positive)
    test: int = attrs.field(default=100, validator=positive)


@attrs.define
class EnsembleConfig:
    """Test-time ensemble: ``H`` crops per image, averaged (circular mean for the angle)."""

    eval: int = attrs.field(default=1, validator=positive)
    predict: int = attrs.field(default=4, validator=positive)
    crop: float = attrs.field(default=0.95, validator=fraction)


@attrs.define
class GraspConfig:
    """Grasp rectangles (cx cy theta w h) from one image, as constrained integers; OCID-Grasp / Cornell /
    Jacquard

    The task's settings: the ``[task]`` table of a run's TOML.
    """

    data_format: Literal["ocid", "cornell", "jacquard"] = "ocid"
    data_dir: str = ""  # empty: the embedded synthetic OCID-format data, rendered on first use
    split_files: dict[str, str] = attrs.field(
        factory=lambda: {"train": "training_0.txt", "val": "validation_0.txt", "test": "test_0.txt"})
    # Cornell and Jacquard have no official split: images go to train/val/test by a hash of their
    # name, in these shares (whole percents); the default keeps the split of earlier versions
    split_ratios: list[float] = attrs.field(factory=lambda: [0.8, 0.1, 0.1], validator=_split_ratios)
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
    # predict --input: the object to grasp ("red mug" -> "Grasp the red mug.") in images whose data
    # names none (an OCID-layout image's objects/ file names its own target)
    predict_target: str = ""
    eval_pictures: int = attrs.field(default=8, validator=non_negative)
