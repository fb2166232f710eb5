"""The one exception type that means "the user's input is wrong", for the core and every plugin.

The CLI prints a :class:`UserError` as one line and exits with status 2 (the same status as a
configuration error or an unknown task or stage). Any other exception is a bug in qvl or a plugin:
the CLI shows its traceback and a line saying so (exit status 1).
"""

from __future__ import annotations

from pathlib import Path

USER_ERROR_EXIT = 2


class UserError(Exception):
    """Bad input a person can fix: a missing or malformed file, an impossible setting, a folder
    qvl may not write into. The message is one line naming the file, line or key and what was
    expected; plugins raise it (or a subclass) instead of ``ValueError``."""


def unreadable_file(path: str | Path, what: str, exc: BaseException) -> UserError:
    """A :class:`UserError` for a file that exists but cannot be decoded (image, video, table)."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"{path}: cannot read this {what} ({type(exc).__name__}: {reason})")
