"""Chat conversations and batches: image + instruction -> ``"cx cy theta w h"``.

The user turn holds the image, the sample's own instruction when its data names a target object
("Grasp the red mug."), then the task's ``instruction`` (how to answer).

Training batches are prompt-masked SFT batches from ``qvl.chat``; a masked field's digits are
also left out of the loss. Evaluation batches hold ``H`` crops of every image (the test-time
ensemble), with where each crop came from, so ``decode`` can map answers back to the full image.
"""

from __future__ import annotations

from typing import Any

import attrs

from qvl_grasp.geometry import Grasp

@attrs.frozen
class Crop:
    """Where an ensemble member's crop lies in the full image (pixels)."""

    left: int
    top: int
    width: int
    height: int


def object_instruction(name: str) -> str:
    """What to grasp, for a scene of several objects: ``"Grasp the red mug."``."""
    return f"Grasp the {name}."


def conversation(image: Any, answer: str | None, model_size: tuple[int, int], system: str = "",
                 instruction: str = "", target: str | None = None) -> list[dict[str, Any]]:
    """System turn (if any), then the image and the instruction, then the answer (for training).

    ``target``: the sample's own instruction (``"Grasp the red mug."``); it comes before the task's
    ``instruction``, which says how to answer.
    """
    width, height = model_size
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    text = " ".join(part for part in (target, instruction) if part)
    messages.append({"role": "user", "content": [
        {"type": "image", "image": image, "resized_width": width, "resized_height": height},
        {"type": "text", "text": text},
    ]})
    if answer is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def training_target(grasps: list[Grasp], rule: str, rng: Any) -> Grasp:
    """The one rectangle the model is taught for an image that has several.

    ``grasps`` are the sample's rectangles that count: on a scene whose instruction names an object,
    that object's only (see ``GraspRecord.target_grasps``).

    ``central``: the one nearest the mean of all centres (well defined on any data set, and the
    middle of the object on OCID-style annotations); ``first``: the file's first; ``random``: a
    different one each time the image is seen.
    """
    if not grasps:
        raise ValueError("an image without grasp rectangles cannot be a training target")
    if rule == "first":
        return grasps[0]
    if rule == "random":
        return grasps[int(rng.integers(len(grasps)))]
    mx = sum(g.cx for g in grasps) / len(grasps)
    my = sum(g.cy for g in grasps) / len(grasps)
    return min(grasps, key=lambda g: (g.cx - mx) ** 2 + (g.cy - my) ** 2)


def mask_field_labels(labels: Any, tokenizer: Any, rows_fields: list[int | None], ignore_index: int) -> Any:
    """Drop one answer field's digit tokens from the loss, per row (``None``: keep all).

    Qwen's tokenizer writes every digit and every space as its own token, so a field is the run of
    digit tokens after its n-th space: counting space tokens with a cumulative sum finds it for the
    whole batch at once (decoding token by token cost about 1 ms a step).
    """
    import torch

    rows = [row for row, field in enumerate(rows_fields) if field is not None]
    if not rows:
        return labels
    digits, space = _answer_token_ids(tokenizer)
    fields = torch.tensor([rows_fields[row] for row in rows], device=labels.device).unsqueeze(1)
    chosen = labels[rows]
    spaces_before = torch.cumsum(chosen == space, dim=1)
    is_digit = torch.isin(chosen, torch.tensor(digits, device=labels.device))
    chosen[is_digit & (spaces_before == fields)] = ignore_index
    labels[rows] = chosen
    return labels


def _answer_token_ids(tokenizer: Any) -> tuple[list[int], int]:
    """The ids of the ten digit tokens and of the single-space token."""
    digits = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)]
    (space,) = tokenizer.encode(" ", add_special_tokens=False)
    return digits, space


def crops_for(width: int, height: int, members: int, keep: float, seed: int) -> list[Crop]:
    """The ensemble's crops of one image: the full image first, then ``keep``-sized random crops."""
    import numpy as np

    crops = [Crop(0, 0, width, height)]
    rng = np.random.default_rng(seed)
    cw, ch = max(1, round(width * keep)), max(1, round(height * keep))
    for _ in range(members - 1):
        crops.append(Crop(int(rng.integers(0, width - cw + 1)), int(rng.integers(0, height - ch + 1)), cw, ch))
    return crops
