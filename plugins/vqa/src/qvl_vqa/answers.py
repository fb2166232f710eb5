"""Answers by constrained decoding: "1"/"2" for paired questions, an integer 0-100 for progress."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

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


PROGRESS_ANSWERS = [str(n) for n in range(101)]
CHOICE_ANSWERS = ["1", "2"]


def progress_from(probabilities: dict[str, float], rule: str) -> int:
    """One progress value from the model's distribution over "0".."100": its ``median`` (least
    expected absolute error) or its ``mean`` (least expected squared error), rounded."""
    values = np.array([int(a) for a in probabilities])
    weights = np.array(list(probabilities.values()))
    order = np.argsort(values)
    values, weights = values[order], weights[order] / weights.sum()
    if rule == "mean":
        return int(round(float((values * weights).sum())))
    if rule == "median":
        return int(values[np.searchsorted(np.cumsum(weights), 0.5)])
    raise ValueError(f"unknown progress rule {rule!r}; expected 'median' or 'mean'")


def decode_batch(backbone: Backbone, batch: dict[str, Any], progress_answer: str = "greedy") -> list[dict[str, Any]]:
    """One prediction per item: its summary, the raw text, the parsed value and whether it is valid.

    ``progress_answer``: ``greedy`` generates every answer (constrained); ``median`` / ``mean``
    answer a progress question from the model's whole distribution over 0-100 instead
    (:mod:`qvl.answer_probabilities`); every such prediction keeps the greedy answer as
    ``greedy_value``, a progress one also ``median_value`` and ``mean_value``.
    """
    items = batch[SAMPLES_KEY]
    inputs = {key: value for key, value in batch.items() if key != SAMPLES_KEY}
    if progress_answer != "greedy":
        return _decode_from_distributions(backbone, items, inputs, progress_answer)
    from qvl.decoding import generate_constrained

    constraints = [constraint_for(item["sample_type"]) for item in items]
    texts = generate_constrained(backbone.model, backbone.processor, inputs, constraints, MAX_NEW_TOKENS)
    predictions = []
    for item, text in zip(items, texts):
        value = parse_answer(item["sample_type"], text)
        predictions.append({**item, "text": text, "value": value, "valid": value is not None})
    return predictions


def _decode_from_distributions(backbone: Backbone, items: list[dict[str, Any]], inputs: dict[str, Any],
                               rule: str) -> list[dict[str, Any]]:
    from qvl.answer_probabilities import answer_probabilities, greedy_answer

    tokenizer = backbone.processor.tokenizer
    answer_sets = [PROGRESS_ANSWERS if item["sample_type"] == "progress" else CHOICE_ANSWERS for item in items]
    predictions = []
    for item, probabilities in zip(items, answer_probabilities(backbone.model, tokenizer, inputs, answer_sets)):
        greedy = int(greedy_answer(probabilities, tokenizer))
        if item["sample_type"] != "progress":
            predictions.append({**item, "text": str(greedy), "value": greedy, "valid": True, "greedy_value": greedy})
            continue
        summaries = {f"{name}_value": progress_from(probabilities, name) for name in ("median", "mean")}
        value = summaries[f"{rule}_value"]
        predictions.append({**item, "text": str(value), "value": value, "valid": True, "greedy_value": greedy,
                            **summaries})
    return predictions
