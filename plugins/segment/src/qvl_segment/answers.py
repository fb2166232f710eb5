"""The JSON the language model writes, its schema, and filling ``<FRAME>`` with frame numbers.

In the default mode the LM does not write frame numbers: the heads place the segments more
precisely than a small LM counts frames, so each frame field is the placeholder token
``<FRAME>`` (a JSON string, so the raw output parses) and :func:`fill_frames` writes the
post-processed numbers in. In ``mode = "lm"`` (the ablation) the fields are integers the LM
writes itself. Every answer is constrained by :func:`answer_schema` through ``qvl.decoding``
(compact JSON, no free whitespace), and the training targets are written with the same
separators and key order, so what the model learns is exactly what the decoder allows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

FRAME_TOKEN = "<FRAME>"
FIELDS = ("start_frame", "end_frame", "action_text", "skill")
MAX_ACTION_TEXT = 80  # characters; bounds generation and refuses run-on text
# an action text is printable ASCII without quote or backslash, so it needs no JSON escape: xgrammar's
# length-bounded strings let control characters through (JSON forbids them), and over byte-level
# tokens its non-ASCII classes let a random model write invalid UTF-8 (seen in the 1,000-generation
# test); texts in other scripts are transliterated to '?' for the model
TEXT_PATTERN = r'^[ !#-\[\]-~]{1,%d}$'
_UNWRITABLE = re.compile(r'[^ !#-\[\]-~]')
SEPARATORS = (", ", ": ")  # xgrammar's compact JSON (qvl.decoding.Constraint.json_schema)


def writable_text(text: str, max_text: int = MAX_ACTION_TEXT) -> str:
    """``text`` as the schema lets the model write it: quotes become ``'``, whitespace and backslashes
    spaces, other characters ``?``; cut to ``max_text`` characters (never empty)."""
    def replace(match: re.Match) -> str:
        char = match.group()
        return "'" if char == '"' else " " if char.isspace() or char == "\\" else "?"

    cleaned = _UNWRITABLE.sub(replace, text).strip()[:max_text].strip()
    return cleaned or "-"


def answer_text(segments: Sequence[Any], *, frames_as_digits: bool, max_text: int = MAX_ACTION_TEXT) -> str:
    """The training target for an episode's segments (``Segment``s with original frame numbers)."""
    rows = []
    for segment in segments:
        start = segment.start_frame if frames_as_digits else FRAME_TOKEN
        end = segment.end_frame if frames_as_digits else FRAME_TOKEN
        text = writable_text(segment.action_text, max_text)
        rows.append({"start_frame": start, "end_frame": end, "action_text": text,
                     "skill": segment.skill})
    # sorted keys: qvl.decoding canonicalises a schema with sorted keys, and xgrammar then asks for
    # the properties in that order (action_text, end_frame, skill, start_frame)
    return json.dumps({"segments": rows}, separators=SEPARATORS, ensure_ascii=False, sort_keys=True)


def answer_schema(skills: Sequence[str], *, count: int | None, k_max: int, frames_as_digits: bool,
                  num_frames: int | None = None, max_text: int = MAX_ACTION_TEXT) -> dict[str, Any]:
    """The JSON schema of one answer.

    :param skills: the skill names the model may write (those of the training episodes).
    :param count: exactly this many segments (the K head's answer), or ``None``: 0..``k_max``.
    :param frames_as_digits: integer frame fields (``mode = "lm"``) instead of the placeholder.
    :param num_frames: with digits, frames are at most ``num_frames - 1``.
    """
    if frames_as_digits:
        frame: dict[str, Any] = {"type": "integer", "minimum": 0}
        if num_frames is not None:
            frame["maximum"] = max(0, num_frames - 1)
    else:
        frame = {"type": "string", "enum": [FRAME_TOKEN]}
    segment = {
        "type": "object",
        "properties": {"start_frame": frame, "end_frame": frame,
                       "action_text": {"type": "string", "pattern": TEXT_PATTERN % max_text},
                       "skill": {"type": "string", "enum": sorted(set(skills))}},
        "required": list(FIELDS),
        "additionalProperties": False,
    }
    low, high = (count, count) if count is not None else (0, k_max)
    return {"type": "object", "properties": {"segments": {"type": "array", "items": segment, "minItems": low,
                                                            "maxItems": high}},
            "required": ["segments"], "additionalProperties": False}


def final_schema(skills: Sequence[str], num_frames: int, k_max: int) -> dict[str, Any]:
    """What a prediction is after filling: integer frames inside the episode."""
    return answer_schema(skills, count=None, k_max=k_max, frames_as_digits=True, num_frames=num_frames)


def parse_answer(text: str) -> list[dict[str, Any]] | None:
    """The segments of a generated answer, or ``None`` when it is not the expected JSON."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("segments"), list):
        return None
    if not all(isinstance(row, dict) for row in value["segments"]):
        return None
    return value["segments"]


def fill_frames(rows: list[dict[str, Any]], placed: Sequence[tuple[int, int]]) -> list[dict[str, Any]]:
    """Each row with its ``<FRAME>`` fields replaced by the frames the heads placed, in order.

    Rows and placed segments pair up by position (both are in time order: the K head fixed their
    number, the schema made the LM write exactly that many).
    """
    filled = []
    for row, (start, end) in zip(rows, placed):
        row = dict(row)
        if row.get("start_frame") == FRAME_TOKEN:
            row["start_frame"] = int(start)
        if row.get("end_frame") == FRAME_TOKEN:
            row["end_frame"] = int(end)
        filled.append(row)
    return filled
