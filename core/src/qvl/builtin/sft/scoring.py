"""Scoring the ``sft`` task's answers: exact match, and per-field accuracy where answers are JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from qvl.report import EvalResult


def json_object(text: str | None) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object, else None."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def exact_matches(references: Sequence[str], answers: Sequence[str]) -> list[float]:
    """1.0 where the answer is the reference, surrounding whitespace aside, else 0.0."""
    return [float(a.strip() == r.strip()) for r, a in zip(references, answers)]


def field_accuracy(references: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """For the rows whose reference is a JSON object: per key, the share of answers that are JSON
    objects with the same value there (an answer that is not JSON gets every field wrong)."""
    hits: dict[str, list[float]] = {}
    for reference, answer in zip(references, answers):
        truth = json_object(reference)
        if truth is None:
            continue
        given = json_object(answer) or {}
        for key, value in truth.items():
            hits.setdefault(key, []).append(float(key in given and given[key] == value))
    return {key: sum(values) / len(values) for key, values in hits.items()}


def scores(references: Sequence[str], answers: Sequence[str]) -> dict[str, Any]:
    """``exact_match``, and for JSON references ``json_valid`` (answers that parse) and ``field_accuracy``."""
    matched = exact_matches(references, answers)
    result: dict[str, Any] = {"exact_match": sum(matched) / max(1, len(matched))}
    structured = [(r, a) for r, a in zip(references, answers) if json_object(r) is not None]
    if structured:
        result["json_valid"] = sum(json_object(a) is not None for _, a in structured) / len(structured)
        result["field_accuracy"] = field_accuracy(references, answers)
    return result


def evaluate(references: Sequence[str], answers: Sequence[str], majority: str | None,
             layouts: Sequence[str] = ()) -> EvalResult:
    """The model's scores with a 95 % interval of its exact match, beside the majority-answer baseline
    (the most common last answer of the training rows, given to every question)."""
    from qvl.scoring import mean_interval

    model = scores(references, answers)
    baselines: dict[str, Any] = {}
    if majority is not None:
        baselines["majority_answer"] = {"answer": majority, **scores(references, [majority] * len(references))}
    interval = mean_interval(exact_matches(references, answers))
    intervals = {"model": {"exact_match": tuple(interval)}} if interval else {}
    columns = [("exact_match", "exact match")]
    if "field_accuracy" in model:
        columns += [(f"field_accuracy/{key}", f"{key} (JSON)") for key in model["field_accuracy"]]
    return EvalResult(model=model, baselines=baselines, intervals=intervals, columns=columns,
                      extra={"samples": len(references), "layouts": list(layouts)})
