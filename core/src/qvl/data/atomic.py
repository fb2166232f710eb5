"""Atomic writes of text, JSON and JSON Lines files: a reader sees the old file or the new one whole.

The content goes into a temporary file beside the target (``.<name>.tmp-<pid>-<random>``, so it
is on the same file system and cleaners that look for ``.tmp-`` find it), is flushed to disk and
renamed over the target. A write that fails midway (a value JSON cannot hold, a row generator
that raises, a full disk, an interrupt) removes the temporary file and leaves the old one intact.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any


def _write_atomic(path: str | Path, fill: Callable[[IO[str]], None], encoding: str) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "x", encoding=encoding, newline="") as handle:  # "x": the umask's permissions
            fill(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` into ``path`` atomically (no newline translation); returns ``path``."""
    return _write_atomic(path, lambda handle: handle.write(text), encoding)


def write_json(path: str | Path, data: Any, *, indent: int | None = None, sort_keys: bool = False,
               default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``json.dumps(data, indent=..., sort_keys=..., default=...)`` into ``path`` atomically,
    exactly that text (no newline at the end); returns ``path``."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=default)
    return write_text(path, text)


def write_jsonl(path: str | Path, rows: Iterable[Any], *, default: Callable[[Any], Any] | None = None) -> Path:
    """Write one ``json.dumps(row)`` line per row into ``path`` atomically; returns ``path``.

    ``rows`` may be a generator: it is written as it comes, and if it raises the old file stays.
    """
    def fill(handle: IO[str]) -> None:
        for row in rows:
            handle.write(json.dumps(row, default=default) + "\n")

    return _write_atomic(path, fill, "utf-8")


__all__ = ["write_json", "write_jsonl", "write_text"]
