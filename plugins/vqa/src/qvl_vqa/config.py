"""The ``[task]`` settings of the vqa task.

The generation settings carry the names of the seed's ``generate_vqa_dataset.py`` flags
(``num_samples``, ``output_path``, ``num_workers``, ``save_batch_size``, ``sample_type_ratio``,
``max_frames``, ``eval_mode``).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from qvl.config import fraction, model_image_size, non_negative, not_with, positive

SAMPLE_TYPES = ("preference", "progress", "similarity")
# how the second (rejected) video of a preference pair is made
PREFERENCE_STRATEGIES = ("rewind", "suboptimal", "different_task", "reverse")
# which frames a progress sample shows, and of which trajectory
PROGRESS_STRATEGIES = ("forward_progress", "prefix", "rewind", "reverse", "different_task")
# what the dissimilar candidate of a similarity triple is
SIMILARITY_STRATEGIES = ("different_task", "suboptimal")
STRATEGIES = {"preference": PREFERENCE_STRATEGIES, "progress": PROGRESS_STRATEGIES,
              "similarity": SIMILARITY_STRATEGIES}
QUALITY_LABELS = ("successful", "suboptimal", "failure")


def _ratio(instance: Any, attribute: attrs.Attribute, value: list[float]) -> None:
    if len(value) != len(SAMPLE_TYPES) or any(v < 0 for v in value) or sum(value) <= 0:
        raise ValueError(f"'{attribute.name}' must be three weights >= 0 for {list(SAMPLE_TYPES)} "
                         f"with a positive sum, e.g. [0.7, 0.3, 0.0]; got {value}")


def _strategy_weights(instance: Any, attribute: attrs.Attribute, value: dict[str, dict[str, float]]) -> None:
    for sample_type, weights in value.items():
        if sample_type not in STRATEGIES:
            raise ValueError(f"'{attribute.name}': unknown sample type {sample_type!r}; expected one of "
                             f"{list(SAMPLE_TYPES)}")
        for name, weight in weights.items():
            if name not in STRATEGIES[sample_type]:
                raise ValueError(f"'{attribute.name}.{sample_type}': unknown strategy {name!r}; expected one of "
                                 f"{list(STRATEGIES[sample_type])}")
            if weight < 0:
                raise ValueError(f"'{attribute.name}.{sample_type}.{name}' must be >= 0, got {weight}")


def _workers(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value == 0 or value < -1:
        raise ValueError(f"'{attribute.name}' must be a number of processes >= 1, or -1 for all cores; got {value}")


def _save_batch(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value == 0 or value < -1:
        raise ValueError(f"'{attribute.name}' must be >= 1, or -1 to write everything at once; got {value}")


def _held_out(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    fraction(instance, attribute, value)
    if instance.val_fraction + value >= 1:
        raise ValueError(f"'{attribute.name}' must be below 1 - val_fraction = {1 - instance.val_fraction:g} "
                         f"(trajectories must be left to train on); got {value!r}")


def _max_frames(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 2:
        raise ValueError(f"'{attribute.name}' must be >= 2 (a video is at least two frames); got {value}")


@attrs.define
class SyntheticConfig:
    """The embedded trajectory store (``qvl run vqa make-data``): a block pushed towards a goal."""

    trajectories_per_task: int = attrs.field(default=30, validator=positive)
    tasks: int = attrs.field(default=4, validator=attrs.validators.in_([1, 2, 3, 4, 5, 6]))
    min_frames: int = attrs.field(default=16, validator=positive)
    max_frames: int = attrs.field(default=32, validator=positive)
    size: int = attrs.field(default=64, validator=positive)  # square frames, pixels
    fps: float = attrs.field(default=10.0, validator=positive)
    # share of trajectories that are successful / suboptimal / failure
    quality_mix: list[float] = attrs.field(factory=lambda: [0.5, 0.3, 0.2])
    lerobot_copy: bool = True  # also write the store as a LeRobot v3.0 data set under lerobot/


@attrs.define
class AugmentConfig:
    """Training-time augmentation of the shown frames (the seed's future item)."""

    frame_drop: float = attrs.field(default=0.0, validator=fraction)  # chance to drop each inner frame
    color_jitter: float = attrs.field(default=0.0, validator=fraction)  # max relative brightness/contrast change


@attrs.define
class VqaConfig:
    """Static VQA from robot trajectories (.npz store or LeRobot): which video makes more progress, how
    much progress (0-100), which video matches; answer-only SFT, constrained answers

    The task's settings: the ``[task]`` table of a run's TOML.
    """

    # the trajectory store: a folder with trajectories.jsonl (or a Hugging Face datasets table) and
    # .npz frame files, or a LeRobot v3.0 / v2.1 data set; empty: the synthetic store, made on first use
    data_dir: str = ""
    # a LeRobot data set on the Hugging Face hub, "org/name", instead of data_dir: read through the local
    # HF cache (downloaded there on first use; with HF_HUB_OFFLINE=1 the cache alone)
    repo_id: str = attrs.field(default="", validator=not_with("data_dir"))
    revision: str = ""  # of repo_id: a branch, tag or commit; empty: main
    data_format: Literal["auto", "npz", "lerobot"] = "auto"
    table: str = ""  # the table inside data_dir: a .jsonl file or a datasets folder; empty: found
    camera_key: str = ""  # LeRobot: the camera to read (empty: the first)
    # LeRobot: a per-frame column of progress in [0, 1] giving each episode's quality (its last value:
    # 1 successful, 0 failure, else suboptimal); missing from the data set: every episode successful
    progress_column: str = "progress"
    fps: float = attrs.field(default=10.0, validator=positive)  # frame rate of .npz trajectories without one
    # the generated VQA data set (a datasets DatasetDict folder); empty: in qvl's cache, keyed by settings
    output_path: str = ""
    num_samples: int = attrs.field(default=6000, validator=positive)
    num_workers: int = attrs.field(default=1, validator=_workers)
    save_batch_size: int = attrs.field(default=10000, validator=_save_batch)
    sample_type_ratio: list[float] = attrs.field(factory=lambda: [0.7, 0.3, 0.0], validator=_ratio)
    # per sample type, the weight of each strategy (a strategy left out keeps weight 1; 0 turns it off)
    strategy_ratio: dict[str, dict[str, float]] = attrs.field(factory=dict, validator=_strategy_weights)
    max_frames: int = attrs.field(default=8, validator=_max_frames)
    # real quality differences instead of augmentations: preference pairs are successful vs
    # suboptimal/failure trajectories of the same task (the seed's --eval_mode)
    eval_mode: bool = False
    val_fraction: float = attrs.field(default=0.1, validator=fraction)  # of trajectories, per task
    test_fraction: float = attrs.field(default=0.15, validator=_held_out)
    # training and evaluation
    multi_image: bool = False  # frames as separate images instead of one video per trajectory
    # the question (with its task) before the videos, so that in a causal model the video tokens can
    # attend to the task; False: after them, the seed's order (the vqa task's defaults turn it on:
    # better on every metric on the embedded tiny model, see docs/training.md)
    question_first: bool = False
    image_size: list[int] = attrs.field(factory=lambda: [64, 64], validator=model_image_size)
    augment: AugmentConfig = attrs.field(factory=AugmentConfig)
    padding_side: Literal["left", "right"] = "right"
    # "answer": cross-entropy over the tokens answers are made of (digits, <|im_end|>), what the
    # constrained decoder chooses among; "full": over the whole vocabulary
    loss_vocabulary: Literal["answer", "full"] = "answer"
    # evaluation: how a progress question is answered. "greedy": constrained generation, the seed's
    # way (the likeliest digit at each step: a mode); "median" / "mean": from the model's whole
    # distribution over 0-100, the answer of least expected absolute / squared error
    progress_answer: Literal["greedy", "median", "mean"] = "greedy"
    # evaluation: ask each preference pair in both orders (position-debiased accuracy)
    both_orders: bool = True
    bootstrap: int = attrs.field(default=1000, validator=non_negative)  # resamples for the 95 % intervals
    synthetic: SyntheticConfig = attrs.field(factory=SyntheticConfig)
