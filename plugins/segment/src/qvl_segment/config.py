"""The ``[task]`` settings of the segment task.

Names follow the seed where it had them (``K_max`` is ``k_max``, the Gaussian ``sigma`` of the
soft boundary labels, the curriculum of heads first, then the language model).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from qvl.config import fraction, model_image_size, non_negative, positive
from qvl_segment.synthetic import SyntheticSettings

# which heads give the answer: "both" (the heads place the segments, the LM names them and writes
# each frame as <FRAME>), "heatmap" (the heads alone, no text), "lm" (the LM alone, frame numbers
# written as digits): the per-head ablation in docs/results.md
MODES = ("both", "heatmap", "lm")


def _at_least_two(instance: Any, attribute: attrs.Attribute, value: int) -> None:
    if value < 2:
        raise ValueError(f"'{attribute.name}' must be >= 2, got {value}")


@attrs.define
class SegmentConfig:
    """Temporal action segmentation of robot episodes: a segment-count head, start/end heatmaps and
    schema-constrained JSON from the LM, decoded in one pass

    The task's settings: the ``[task]`` table of a run's TOML.
    """

    # a folder holding the episodes file (episodes.jsonl, frames or videos beside it); empty: the
    # synthetic data set in qvl's cache, written on first use
    data_dir: str = ""
    episodes_file: str = "episodes.jsonl"
    val_fraction: float = attrs.field(default=0.1, validator=fraction)  # of episodes, by a hash of their id
    test_fraction: float = attrs.field(default=0.2, validator=fraction)
    # what the model sees: T frames sampled uniformly over the episode, each one image
    num_frames: int = attrs.field(default=16, validator=_at_least_two)
    image_size: list[int] = attrs.field(factory=lambda: [64, 64], validator=model_image_size)
    k_max: int = attrs.field(default=4, validator=non_negative)
    mode: Literal["both", "heatmap", "lm"] = "both"
    # features for the heads: hidden states of this layer (None: the middle one) at each frame's
    # visual tokens, mean-pooled per frame
    feature_layer: int | None = None
    head_channels: int = attrs.field(default=128, validator=positive)
    head_layers: int = attrs.field(default=3, validator=positive)  # dilated temporal convolutions
    # soft boundary labels: a Gaussian of this many sampled frames around each start / end
    sigma: float = attrs.field(default=1.0, validator=positive)
    heatmap_loss: Literal["bce", "focal"] = "bce"
    focal_gamma: float = attrs.field(default=2.0, validator=non_negative)
    # loss = lm_weight * LM cross-entropy + count_weight * K cross-entropy + heatmap_weight * heatmap loss
    lm_weight: float = attrs.field(default=1.0, validator=non_negative)
    count_weight: float = attrs.field(default=0.5, validator=non_negative)
    heatmap_weight: float = attrs.field(default=1.0, validator=non_negative)
    # "answer": the LM term is a softmax over the tokens of the training answers only (what the
    # constrained JSON is made of); "full": over the whole vocabulary (a step costs several times more)
    loss_vocabulary: Literal["answer", "full"] = "answer"
    # curriculum: the LM term is off for this share of the steps (heads first), then ramps up
    # linearly over lm_ramp of the steps
    heads_first: float = attrs.field(default=0.2, validator=fraction)
    lm_ramp: float = attrs.field(default=0.1, validator=fraction)
    # post-processing of the heatmaps, in sampled frames
    peak_threshold: float = attrs.field(default=0.1, validator=non_negative)
    nms_radius: int = attrs.field(default=1, validator=non_negative)
    min_length: int = attrs.field(default=1, validator=positive)
    # `qvl run segment prepare --input LEROBOT_ROOT`: a per-frame subtask label column becomes segments
    lerobot_subtask_column: str = "subtask_index"
    lerobot_skill_column: str = ""  # a per-frame skill column; empty: the subtask text is the skill
    lerobot_camera: str = ""  # empty: the first video camera
    lerobot_fps: float | None = None  # keep frames at this rate; None: every frame
    max_new_tokens: int = attrs.field(default=320, validator=positive)
    synthetic: SyntheticSettings = attrs.field(factory=SyntheticSettings)
