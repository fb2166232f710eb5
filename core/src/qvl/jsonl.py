"""JSON Lines tables (LeRobot v2.1 metadata, trajectory and episode tables of the plugins), read with
errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qvl.errors import UserError


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
