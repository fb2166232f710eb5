"""Conversation files as users of LLaMA-Factory, ShareGPT tools and OpenAI-style APIs have them.

Three layouts are read, detected per row (a file usually holds one), a JSON array or JSON Lines:

* **LLaMA-Factory** (its ``mllm_demo.json``): ``messages`` of ``role``/``content`` strings with
  ``<image>`` / ``<video>`` placeholders, filled in order from the row's ``images`` / ``videos``.
* **ShareGPT**: ``conversations`` of ``from`` (``human``/``gpt``/``system``) / ``value``, the same
  placeholders and lists (LLaVA's single ``image`` string too), an optional top-level ``system``.
* **OpenAI**: ``messages`` whose ``content`` is a list of parts: ``{"type": "text", "text"}``,
  ``{"type": "image_url", "image_url": {"url"}}`` or Qwen's ``{"type": "image", "image"}`` (and
  the same for videos).

Every row becomes a :class:`ConversationRow` in the Qwen-VL message format that
:mod:`qvl.chat` takes. Relative media paths resolve against the file's folder and must exist (web
addresses are refused: download the media first; ``data:`` URIs are read); any
malformed row is one :class:`~qvl.errors.UserError` naming the file, the line (the item, for a JSON
array) and the field. Written here rather than with ``datasets``: its loaders take these files, but
neither reports a bad row by line and field nor resolves media paths.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from qvl.errors import UserError

LLAMA_FACTORY, SHAREGPT, OPENAI = "llamafactory", "sharegpt", "openai"
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "system": "system"}
PLACEHOLDER = re.compile(r"<(image|video)>")
MEDIA_PART = {"image": "image", "image_url": "image", "video": "video", "video_url": "video"}


@attrs.frozen
class ConversationRow:
    """One conversation of a file.

    :ivar id: unique within a run's data: ``"<file name>:<line>"`` (``"<file name>[<item>]"`` in a JSON array).
    :ivar where: how errors name the row: ``"<file>, line <n>"`` / ``"<file>, item <n>"``.
    :ivar messages: Qwen-VL messages: ``role`` and ``content``, a list of ``{"type": "text", "text"}``,
        ``{"type": "image", "image": path}`` and ``{"type": "video", "video": path}`` parts (an
        assistant's content is its text).
    :ivar layout: :data:`LLAMA_FACTORY`, :data:`SHAREGPT` or :data:`OPENAI`.
    """

    id: str
    where: str
    messages: list[dict[str, Any]]
    layout: str

    def prompt_and_answer(self) -> tuple[list[dict[str, Any]], str | None]:
        """The messages before the last assistant turn and that turn's text; ``(messages, None)``
        when the row ends with a user turn (a prompt to answer)."""
        if self.messages[-1]["role"] == "assistant":
            return self.messages[:-1], self.messages[-1]["content"]
        return self.messages, None


def read_conversations(path: str | Path, *, need_answer: bool = True) -> list[ConversationRow]:
    """The conversations of a ``.json`` (array, or one object per line) or ``.jsonl`` file.

    :param need_answer: every row must end with an assistant turn (training and evaluation); else a
        row may end with a user turn, a prompt for ``predict``.
    :raises UserError: the file is missing or not JSON, or a row is malformed (file, line, field).
    """
    path = Path(path).expanduser()
    items = _items(path)
    if not items:
        raise UserError(f"{path}: no conversations in it")
    return [_row(path, number, item, kind, need_answer) for number, item, kind in items]


def _items(path: Path) -> list[tuple[int, Any, str]]:
    """(line or item number, parsed object, "line"/"item") of each row."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it ({exc})") from None
    if text.lstrip().startswith("["):
        try:
            array = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        return [(index, item, "item") for index, item in enumerate(array)]
    items = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append((number, json.loads(line), "line"))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}, line {number}: not valid JSON ({exc.msg}, column {exc.colno}); "
                            "expected a JSON array, or one JSON object per line") from None
    return items


class _Row:
    """One row being read: errors name the file, the line or item, and the field."""

    def __init__(self, path: Path, number: int, kind: str) -> None:
        self.path, self.number, self.kind = path, number, kind

    @property
    def where(self) -> str:
        return f"{self.path}, {self.kind} {self.number}"

    def error(self, field: str, message: str) -> UserError:
        return UserError(f"{self.where}, field '{field}': {message}")

    def media(self, field: str, value: Any) -> str:
        """A media reference: an existing file (relative to the data file's folder) or a ``data:`` URI.

        Web addresses are refused here, not fetched in the middle of a run: qvl reads no network
        a user did not ask for, and a download failing at step 5,000 would lose the run."""
        if not isinstance(value, str) or not value:
            raise self.error(field, f"expected a file path, got {value!r:.60}")
        if value.startswith("data:"):
            return value
        if value.startswith(("http://", "https://")):
            raise self.error(field, f"a web address ({value:.80}): qvl reads local files only; download the "
                             "media and name its path (relative to this file's folder, or absolute)")
        file = Path(value.removeprefix("file://")).expanduser()
        file = Path(os.path.normpath(file if file.is_absolute() else self.path.parent.resolve() / file))
        if not file.is_file():
            raise self.error(field, f"no such file: {file}")
        return str(file)


def _row(path: Path, number: int, item: Any, kind: str, need_answer: bool) -> ConversationRow:
    row = _Row(path, number, kind)
    if not isinstance(item, dict):
        raise UserError(f"{row.where}: expected a JSON object with 'messages' or 'conversations', "
                        f"got {type(item).__name__}")
    if "conversations" in item:
        layout, messages = SHAREGPT, _sharegpt(row, item)
    elif "messages" in item:
        listed = _list(row, item, "messages")
        is_openai = any(isinstance(m, dict) and isinstance(m.get("content"), list) for m in listed)
        layout = OPENAI if is_openai else LLAMA_FACTORY
        if is_openai:
            messages = _openai(row, listed)
        else:
            messages = _placeholders(row, item, listed, "messages", "role", "content")
    else:
        raise UserError(f"{row.where}: no 'messages' (LLaMA-Factory, OpenAI) or 'conversations' (ShareGPT) field")
    _check_turns(row, messages, "conversations" if layout == SHAREGPT else "messages", need_answer)
    file_id = f"{path.name}:{number}" if kind == "line" else f"{path.name}[{number}]"
    return ConversationRow(id=file_id, where=row.where, messages=messages, layout=layout)


def _list(row: _Row, item: dict[str, Any], field: str) -> list[Any]:
    value = item[field]
    if not isinstance(value, list) or not value:
        raise row.error(field, f"expected a non-empty list, got {value!r:.60}")
    return value


def _sharegpt(row: _Row, item: dict[str, Any]) -> list[dict[str, Any]]:
    turns = _list(row, item, "conversations")
    messages = _placeholders(row, item, turns, "conversations", "from", "value")
    system = item.get("system")
    if system is not None:
        if not isinstance(system, str):
            raise row.error("system", f"expected a string, got {system!r:.60}")
        if system and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system})
    return messages


def _media_lists(row: _Row, item: dict[str, Any]) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {}
    for kind in ("image", "video"):
        field = kind + "s"
        values = item.get(field, [])
        if kind == "image" and "image" in item and field not in item:  # LLaVA: one "image" string
            values, field = [item["image"]], "image"
        if values is None:
            values = []
        if not isinstance(values, list):
            raise row.error(field, f"expected a list of file paths, got {values!r:.60}")
        lists[kind] = [row.media(f"{field}[{i}]" if field.endswith("s") else field, v) for i, v in enumerate(values)]
    return lists


def _placeholders(row: _Row, item: dict[str, Any], turns: list[Any], field: str, role_key: str,
                  text_key: str) -> list[dict[str, Any]]:
    """Messages of string contents with ``<image>`` / ``<video>`` placeholders, filled from the lists."""
    media = _media_lists(row, item)
    used = {"image": 0, "video": 0}
    messages = []
    for index, turn in enumerate(turns):
        name = f"{field}[{index}]"
        if not isinstance(turn, dict):
            raise row.error(name, f"expected an object with '{role_key}' and '{text_key}', got {turn!r:.60}")
        role = _role(row, turn, role_key, name)
        text = turn.get(text_key)
        if not isinstance(text, str):
            raise row.error(f"{name}.{text_key}", f"expected a string, got {text!r:.60}")
        parts: list[dict[str, Any]] = []
        for piece_index, piece in enumerate(PLACEHOLDER.split(text)):
            if piece_index % 2:  # a placeholder's kind
                if used[piece] == len(media[piece]):
                    raise row.error(f"{piece}s", f"more <{piece}> placeholders in '{field}' than the "
                                    f"{len(media[piece])} {piece} paths listed")
                if role != "user":
                    raise row.error(f"{name}.{text_key}", f"<{piece}> in a {role} turn; only user turns hold media")
                parts.append({"type": piece, piece: media[piece][used[piece]]})
                used[piece] += 1
            elif role != "user":
                parts.append({"type": "text", "text": piece})  # an answer, verbatim
            elif piece.strip():
                parts.append({"type": "text", "text": piece.strip()})
        messages.append(_message(role, parts))
    for kind in ("image", "video"):
        if used[kind] != len(media[kind]):
            raise row.error(f"{kind}s", f"{len(media[kind])} {kind} paths but {used[kind]} <{kind}> placeholders "
                            f"in '{field}': each path needs its placeholder where the {kind} goes")
    return messages


def _openai(row: _Row, turns: list[Any]) -> list[dict[str, Any]]:
    messages = []
    for index, turn in enumerate(turns):
        name = f"messages[{index}]"
        if not isinstance(turn, dict):
            raise row.error(name, f"expected an object with 'role' and 'content', got {turn!r:.60}")
        role = _role(row, turn, "role", name)
        content = turn.get("content")
        if isinstance(content, str):
            messages.append(_message(role, [{"type": "text", "text": content}]))
            continue
        if not isinstance(content, list):
            raise row.error(f"{name}.content", f"expected a string or a list of parts, got {content!r:.60}")
        parts = []
        for part_index, part in enumerate(content):
            where = f"{name}.content[{part_index}]"
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                if not isinstance(part.get("text"), str):
                    raise row.error(f"{where}.text", f"expected a string, got {part.get('text')!r:.60}")
                parts.append({"type": "text", "text": part["text"]})
            elif kind in MEDIA_PART:
                media = MEDIA_PART[kind]
                if role != "user":
                    raise row.error(where, f"a {media} in a {role} turn; only user turns hold media")
                value = part.get(kind)
                if isinstance(value, dict):  # {"type": "image_url", "image_url": {"url": ...}}
                    value = value.get("url")
                parts.append({"type": media, media: row.media(f"{where}.{kind}", value)})
            else:
                raise row.error(f"{where}.type", "expected 'text', 'image', 'image_url', 'video' or 'video_url', "
                                f"got {kind!r:.40}")
        messages.append(_message(role, parts))
    return messages


def _role(row: _Row, turn: dict[str, Any], key: str, name: str) -> str:
    value = turn.get(key)
    if value not in ROLES:
        raise row.error(f"{name}.{key}", f"expected one of {', '.join(ROLES)}, got {value!r:.40}")
    return ROLES[value]


def _message(role: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    if role == "user":
        return {"role": role, "content": parts}
    # assistant and system turns are text: the chat template renders a string the same way
    return {"role": role, "content": "".join(part["text"] for part in parts)}


def _check_turns(row: _Row, messages: Sequence[dict[str, Any]], field: str, need_answer: bool) -> None:
    """An optional system turn, then user and assistant turns alternating, starting with the user."""
    start = 1 if messages[0]["role"] == "system" else 0
    if start == len(messages):
        raise row.error(field, "only a system turn; expected user and assistant turns after it")
    for index in range(start, len(messages)):
        expected = "user" if (index - start) % 2 == 0 else "assistant"
        if messages[index]["role"] != expected:
            raise row.error(f"{field}[{index}]", f"a {messages[index]['role']} turn where a {expected} turn belongs "
                            "(after an optional system turn, user and assistant turns alternate)")
    if need_answer and messages[-1]["role"] != "assistant":
        raise row.error(f"{field}[{len(messages) - 1}]", "the conversation ends with a user turn; training and "
                        "evaluation need the assistant's answer last")


__all__ = ["LLAMA_FACTORY", "OPENAI", "SHAREGPT", "ConversationRow", "read_conversations"]
