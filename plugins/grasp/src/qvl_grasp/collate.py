"""Batches for training (augmented SFT) and for decoding (ensemble crops), and their decoding."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

import attrs

from qvl_grasp.augment import augment_geometry, color_factors, jitter_colors, noisy_bins
from qvl_grasp.geometry import Grasp, ensemble_mean
from qvl_grasp.prompting import conversation, crops_for, mask_field_labels, training_target
from qvl_grasp.quantizer import FIELDS, Quantizer, bins_to_text, parse_answer
from qvl_grasp.readers import GraspDataError

if TYPE_CHECKING:
    from qvl.backbone import Backbone

CROPS_KEY = "grasp_crops"
INSTRUCTIONS_KEY = "grasp_instructions"  # each image's own instruction, for the predictions


def _resized(image: Any, size: tuple[int, int]) -> Any:
    from PIL import Image

    return image if image.size == size else image.resize(size, Image.BILINEAR)


def _working_copy(image: Any, grasps: list[Grasp], model_size: tuple[int, int]) -> tuple[Any, list[Grasp]]:
    """The image scaled uniformly to twice the model's input size, grasps with it.

    Augmenting at this size costs a fraction of augmenting a 640x480 original, and quantized
    labels do not change: they are fractions of the image size.
    """
    from PIL import Image

    factor = min(1.0, 2 * max(model_size[0] / image.size[0], model_size[1] / image.size[1]))
    if factor >= 1.0:
        return image, grasps
    size = (max(1, round(image.size[0] * factor)), max(1, round(image.size[1] * factor)))
    sx, sy = size[0] / image.size[0], size[1] / image.size[1]
    scaled = [Grasp(cx=g.cx * sx, cy=g.cy * sy, theta=g.theta, w=g.w * factor, h=g.h * factor) for g in grasps]
    return image.resize(size, Image.BILINEAR), scaled


class TrainCollator:
    """Augment, pick the target rectangle, quantize, and build a prompt-masked SFT batch.

    ``cached_prompts``: tokenize each distinct prompt once (:class:`qvl.encoded_rows.PromptRows`; the
    same batches), off with ``train.prepared_cache = false``.
    """

    def __init__(self, config: Any, processor: Any, seed: int, cached_prompts: bool = True) -> None:
        import numpy as np

        from qvl.encoded_rows import PromptRows

        self.config = config
        self.processor = processor
        self.model_size = tuple(config.model_image_size)
        self.rng = np.random.default_rng([seed, 0x6A5])
        self.prompt_rows = PromptRows(processor) if cached_prompts else None

    def answer_for(self, sample: dict[str, Any], rng: Any = None) -> tuple[Any, tuple[int, ...], int | None]:
        """The (augmented) image at the model's input size, target bins and the field to leave out of the
        loss, if any."""
        config, augment, rng = self.config, self.config.augment, rng if rng is not None else self.rng
        grasps = sample["grasps"]
        if not grasps:
            raise GraspDataError(f"{sample['id']}: no grasp rectangles; a training image needs at least one")
        # from the prepared cache, when training does not rotate: the working copy already at the model's size
        shown = None if augment.rotates else sample.get("shown_image")
        if shown is None:
            image, grasps = _working_copy(sample["image"], grasps, self.model_size)
            working_size = image.size
        else:
            working_size = tuple(sample["working_size"])
        factors: tuple[float | None, ...] = ()
        if augment.enabled:
            # PIL per image, not one batched tensor op: collation runs on the CPU (in DataLoader
            # workers, one torch thread each, also on a GPU machine), where PIL's uint8 loops were
            # 1.6-1.8x faster for the colours and 1.3-1.4x for rotation (benchmarks/bench_grasp_augment.py)
            if shown is None:
                image, grasps = augment_geometry(image, grasps, rng, augment)
            factors = color_factors(rng, augment)
        bins = Quantizer(*working_size).encode(training_target(grasps, config.target, rng))
        # the colours are jittered at the model's size, a quarter of the working copy's pixels
        image = jitter_colors(shown if shown is not None else _resized(image, self.model_size), factors)
        masked = None
        if augment.enabled:
            bins = noisy_bins(bins, rng, augment.label_noise_prob)
            if rng.random() < augment.masked_field_prob:
                masked = int(rng.integers(len(FIELDS)))
        return image, bins, masked

    def __call__(self, samples: list[dict[str, Any]], rng: Any = None) -> dict[str, Any]:
        """``rng``: the runner's generator for this batch (same augmentation after a resume and with
        any number of workers); without it, the collator's own stream."""
        from qvl import chat

        conversations, masked_fields = [], []
        for sample in samples:
            image, bins, masked = self.answer_for(sample, rng)
            conversations.append(conversation(image, bins_to_text(bins), self.model_size,
                                              self.config.system_prompt, self.config.instruction,
                                              target=sample.get("instruction")))
            masked_fields.append(masked)
        if self.prompt_rows is not None:
            batch = self.prompt_rows.batch(conversations)
        else:
            batch = chat.sft_batch(self.processor, conversations)
        mask_field_labels(batch["labels"], self.processor.tokenizer, masked_fields, chat.IGNORE_INDEX)
        return batch


class EnsembleCollator:
    """``members`` crops of every image as generation prompts; where each crop lies rides along."""

    def __init__(self, config: Any, processor: Any, members: int, seed: int) -> None:
        self.config = config
        self.processor = processor
        self.members = members
        self.seed = seed
        self.model_size = tuple(config.model_image_size)

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        from qvl import chat

        conversations, crops = [], []
        for sample in samples:
            image = sample["image"]
            sample_crops = crops_for(*image.size, self.members, self.config.ensemble.crop,
                                     seed=zlib.crc32(f"{self.seed}:{sample['id']}".encode()))
            for crop in sample_crops:
                piece = image.crop((crop.left, crop.top, crop.left + crop.width, crop.top + crop.height))
                conversations.append(conversation(_resized(piece, self.model_size), None, self.model_size,
                                                  self.config.system_prompt, self.config.instruction,
                                                  target=sample.get("instruction")))
            crops.append([attrs.astuple(crop) for crop in sample_crops])
        batch = chat.prompt_batch(self.processor, conversations)
        batch[CROPS_KEY] = crops
        batch[INSTRUCTIONS_KEY] = [sample.get("instruction") for sample in samples]
        return batch


def generate_answers(config: Any, backbone: Backbone, inputs: dict[str, Any]) -> list[str]:
    """Greedy answers, constrained to the grasp grammar unless ``task.constrained`` is false."""
    from qvl import chat, decoding
    from qvl_grasp.grammar import grasp_constraint

    if config.constrained:
        return decoding.generate_constrained(backbone.model, backbone.processor, inputs, grasp_constraint(),
                                             config.max_new_tokens)
    return chat.generate_text(backbone.model, backbone.processor, inputs, config.max_new_tokens)


def decode_batch(config: Any, backbone: Backbone, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """One prediction per image: the ensemble's valid members averaged, in full-image pixels."""
    inputs = {key: value for key, value in batch.items() if key not in (CROPS_KEY, INSTRUCTIONS_KEY)}
    answers = iter(generate_answers(config, backbone, inputs))
    predictions = []
    instructions = batch.get(INSTRUCTIONS_KEY) or [None] * len(batch[CROPS_KEY])
    for sample_crops, instruction in zip(batch[CROPS_KEY], instructions):
        members: list[Grasp] = []
        texts = []
        for left, top, width, height in sample_crops:
            text = next(answers)
            texts.append(text)
            bins = parse_answer(text)
            if bins is not None:
                members.append(Quantizer(width, height).decode(bins).shifted(left, top))
        grasp = ensemble_mean(members) if members else None
        predictions.append({
            "grasp": grasp.as_dict() if grasp else None,
            "corners": [[round(x, 2), round(y, 2)] for x, y in grasp.corners()] if grasp else None,
            "valid": grasp is not None,
            "answers": texts,
            "valid_members": len(members),
            **({"instruction": instruction} if instruction else {}),
        })
    return predictions
