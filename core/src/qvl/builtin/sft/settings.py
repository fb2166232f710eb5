"""The ``[task]`` settings of the built-in ``sft`` task."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import attrs

from qvl.config import fraction, not_with, positive
from qvl.errors import UserError


@attrs.define
class SyntheticConfig:
    """``make-data``: coloured shapes, asked about in all three layouts (train: LLaMA-Factory JSON,
    val: ShareGPT JSON Lines, test: OpenAI JSON Lines)."""

    train_samples: int = attrs.field(default=480, validator=positive)
    val_samples: int = attrs.field(default=60, validator=positive)
    test_samples: int = attrs.field(default=60, validator=positive)
    image_size: int = attrs.field(default=64, validator=positive)


_ONE_CONSTRAINT = "only one answer constraint can hold"


def absolute(value: str) -> str:
    """A file setting as an absolute path (``~`` expanded); empty stays empty."""
    return str(Path(value).expanduser().absolute()) if value else value


@attrs.define
class SftConfig:
    """Your own image/video conversations (LLaMA-Factory, ShareGPT or OpenAI messages): masked SFT"""

    # the conversation files (.json array or .jsonl); empty: the synthetic example make-data writes.
    # Kept absolute, so that a run's saved settings still find them from another folder
    train_file: str = attrs.field(default="", converter=absolute)
    # empty with a train_file: val_fraction of its rows, held out by a hash of their id
    val_file: str = attrs.field(default="", converter=absolute)
    test_file: str = attrs.field(default="", converter=absolute)
    val_fraction: float = attrs.field(default=0.1, validator=fraction)
    data_dir: str = ""  # where make-data writes the synthetic example (empty: qvl's cache)
    # predict on a folder of images (predict.input = FOLDER): the question asked about each
    question: str = ""
    system: str = ""  # a system prompt for rows that have none
    # an answer constraint for eval and predict (qvl.decoding), at most one: the answers listed,
    # a regex, or a JSON schema (inline JSON, or the path of a .json file)
    choices: list[str] = attrs.field(factory=list)
    regex: str = attrs.field(default="", validator=not_with("choices", _ONE_CONSTRAINT))
    json_schema: str = attrs.field(default="", validator=[not_with("choices", _ONE_CONSTRAINT),
                                                          not_with("regex", _ONE_CONSTRAINT)])
    max_new_tokens: int = attrs.field(default=64, validator=positive)
    # images are resized (aspect kept) to at most this many pixels, as LLaMA-Factory's image_max_pixels
    image_max_pixels: int = attrs.field(default=768 * 768, validator=positive)
    image_min_pixels: int = attrs.field(default=32 * 32, validator=positive)  # video frames too
    # videos: frames sampled at video_fps, at most video_max_frames, each at most video_max_pixels
    video_fps: float = attrs.field(default=2.0, validator=positive)
    video_max_frames: int = attrs.field(default=64, validator=positive)
    video_max_pixels: int = attrs.field(default=256 * 256, validator=positive)
    synthetic: SyntheticConfig = attrs.field(factory=SyntheticConfig)


def answer_constraint(settings: SftConfig) -> Any:
    """The :class:`qvl.decoding.Constraint` of ``choices`` / ``regex`` / ``json_schema``, or None."""
    return _constraint(tuple(settings.choices), settings.regex, settings.json_schema)


@functools.lru_cache(maxsize=8)
def _constraint(choices: tuple[str, ...], regex: str, json_schema: str) -> Any:
    # cached: decode asks for it every batch, and making one parses the grammar (and reads a schema file)
    from qvl.decoding import Constraint

    if choices:
        return Constraint.choices(list(choices))
    if regex:
        return Constraint.regex(regex)
    if json_schema:
        try:
            return Constraint.json_schema(_schema_text(json_schema))
        except UserError as exc:  # the schema's own error, said of the setting that holds it
            raise UserError(f"task.json_schema = {json_schema!r:.80}: {exc}") from None
    return None


def _schema_text(value: str) -> str:
    """The schema's JSON: ``value`` itself when it is inline JSON, else the file it names."""
    if value.lstrip().startswith("{"):
        return value
    try:
        return Path(value).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"neither inline JSON nor a readable file ({exc})") from None
