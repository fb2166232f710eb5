"""JSON Lines tables read with errors that name the file, the line and the field.

Used for LeRobot v2.1 metadata and the plugins' episode, event and trajectory tables.
:func:`read_objects` checks that every line is a JSON object; :func:`read_lines` also hands out
each line as a :class:`JsonLine`, whose :meth:`~JsonLine.value` checks one field at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qvl.errors import UserError

Check = type | tuple[type, ...] | Callable[[Any], bool]


def read_objects(path: str | Path, error: type[Exception] = UserError) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a ``.jsonl`` file with their 1-based line numbers (blank lines skipped).

    :param error: the exception raised (with one line naming the file and line) for a missing or
        unreadable file, a line that is not JSON, or one that is not an object.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise error(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read it ({exc})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{path}, line {number}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        if not isinstance(row, dict):
            raise error(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    return rows


class JsonLine:
    """One object of a JSON Lines file; its fields are checked with errors naming file, line and field.

    :ivar path: the file; ``number``: the 1-based line; ``row``: the parsed object.
    """

    def __init__(self, path: Path, number: int, row: dict[str, Any], error: type[Exception] = UserError) -> None:
        self.path, self.number, self.row, self._error = path, number, row, error

    def error(self, field: str, message: str) -> Exception:
        """The exception (to raise) ``"<file>, line <n>, field '<field>': <message>"``."""
        return self._error(f"{self.path}, line {self.number}, field '{field}': {message}")

    def value(self, field: str, check: Check, expected: str, row: dict[str, Any] | None = None,
              name: str | None = None) -> Any:
        """``row[field]`` (default: the line's) when it passes ``check``.

        :param check: a type or tuple of types (booleans never count as numbers unless ``bool`` is
            one of them), or a predicate.
        :param expected: what the field should be, for the message (``"a non-empty string"``).
        :param row: a nested object of the line to read instead (an item of a list field).
        :param name: how the message names the field (``"action_config[2].skill"``; default ``field``).
        :raises: the line's error: the field is missing, or fails ``check``.
        """
        row = self.row if row is None else row
        name = name or field
        if field not in row:
            raise self.error(name, f"missing; expected {expected}")
        value = row[field]
        if isinstance(check, (type, tuple)):
            kinds = check if isinstance(check, tuple) else (check,)
            ok = isinstance(value, kinds) and (not isinstance(value, bool) or bool in kinds)
        else:
            ok = bool(check(value))
        if not ok:
            raise self.error(name, f"expected {expected}, got {value!r:.60}")
        return value


def read_lines(path: str | Path, error: type[Exception] = UserError) -> list[JsonLine]:
    """The objects of a ``.jsonl`` file as :class:`JsonLine` s, each line checked to be an object
    (:func:`read_objects`); their fields are checked as the caller reads them."""
    path = Path(path)
    return [JsonLine(path, number, row, error) for number, row in read_objects(path, error)]


__all__ = ["JsonLine", "read_lines", "read_objects"]
