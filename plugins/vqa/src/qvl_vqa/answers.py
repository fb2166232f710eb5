"""Answers by constrained decoding: "1"/"2" for paired questions, an integer 0-100 for progress."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from qvl_vqa.collate import SAMPLES_KEY

if TYPE_CHECKING:
    from qvl.backbone import Backbone

PROGRESS_PATTERN = r"(100|[1-9]?[0-9])"
MAX_NEW_TOKENS = 4  # Qwen's tokenizer writes one token per digit: "100" + <|im_end|>
_PROGRESS = re.compile(rf"^{PROGRESS_PATTERN}$")


def answer_token_ids(tokenizer: Any) -> list[int]:
    """The tokens every answer is made of: "0".."9" and ``<|im_end|>`` (one token each in Qwen's vocabulary)."""
    from qvl.chat import single_token_ids
    from qvl.decoding import END_OF_TURN

    return single_token_ids(tokenizer, [str(d) for d in range(10)] + [END_OF_TURN])


def constraint_for(sample_type: str) -> Any:
    from qvl.decoding import Constraint

    if sample_type == "progress":
        return Constraint.regex(PROGRESS_PATTERN)
    return Constraint.choices(["1", "2"])


def parse_answer(sample_type: str, text: str) -> int | None:
    """The answer as a number (1/2, or 0-100), None when it is not a valid one."""
    text = text.strip()
    if sample_type == "progress":
        return int(text) if _PROGRESS.match(text) else None
    return int(text) if text in ("1", "2") else None


def decode_batch(backbone: Backbone, batch: dict[str, Any]) -> list[dict[str, Any]]:
    """One prediction per item: its summary, the raw text, the parsed value and whether it is valid."""
    from qvl.decoding import generate_constrained

    items = batch[SAMPLES_KEY]
    inputs = {key: value for key, value in batch.items() if key != SAMPLES_KEY}
    constraints = [constraint_for(item["sample_type"]) for item in items]
    texts = generate_constrained(backbone.model, backbone.processor, inputs, constraints, MAX_NEW_TOKENS)
    predictions = []
    for item, text in zip(items, texts):
        value = parse_answer(item["sample_type"], text)
        predictions.append({**item, "text": text, "value": value, "valid": value is not None})
    return predictions
