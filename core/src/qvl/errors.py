"""The one exception type that means "the user's input is wrong", for the core and every plugin.

The CLI prints a :class:`UserError` as one line and exits with status 2 (the same status as a
configuration error or an unknown task or stage). Any other exception is a bug in qvl or a plugin:
the CLI shows its traceback and a line saying so (exit status 1). A full disk is the user's to fix:
writes that run out of space become an :class:`OutOfSpaceError`, a :class:`UserError`.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

USER_ERROR_EXIT = 2


class UserError(Exception):
    """Bad input a person can fix: a missing or malformed file, an impossible setting, a folder
    qvl may not write into. The message is one line naming the file, line or key and what was
    expected; plugins raise it (or a subclass) instead of ``ValueError``."""


class MissingExtraError(UserError, ModuleNotFoundError):
    """A part of qvl-core needs a package that only one of its extras installs: the message says which
    ``pip install 'qvl-core[EXTRA]'`` brings it. An ``ImportError`` too, for code that tries a fallback."""

    def __init__(self, part: str, extra: str, package: str) -> None:
        super().__init__(f"{part} needs {package}, which qvl-core installs with its [{extra}] extra: "
                         f"pip install 'qvl-core[{extra}]' (a plugin that uses {part} lists "
                         f"'qvl-core[{extra}]' among its dependencies)")
        self.name = package


def unreadable_file(path: str | Path, what: str, exc: BaseException) -> UserError:
    """A :class:`UserError` for a file that exists but cannot be decoded (image, video, table)."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"{path}: cannot read this {what} ({type(exc).__name__}: {reason})")


class OutOfSpaceError(UserError):
    """A write failed because the disk (or the user's quota) is full: the user frees space or
    writes elsewhere, so it is reported as one line (exit 2), not as a bug."""


# ENOSPC: the file system is full; EDQUOT: the user's quota is.
OUT_OF_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# Libraries that write through their own code lose the errno but keep its text (safetensors:
# "I/O error: No space left on device (os error 28)").
_OUT_OF_SPACE_TEXTS = tuple(os.strerror(code) for code in sorted(OUT_OF_SPACE_ERRNOS))
# Below this, a write that failed for a reason a library does not say (torch.save reports
# "unexpected pos 576 vs 534") is taken to have failed for want of space.
NEARLY_FULL_BYTES = 1 << 20


def free_bytes(path: str | Path) -> int | None:
    """The bytes an unprivileged user may still write on the file system holding ``path`` (or its
    nearest existing parent); ``None`` when that cannot be told."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def is_out_of_space(exc: BaseException, path: str | Path | None = None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means the disk is full.

    With ``path``, an exception that names no cause also counts when the file system holding
    ``path`` has less than :data:`NEARLY_FULL_BYTES` left: call it before removing what the failed
    write left behind, or the space it took is free again.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in OUT_OF_SPACE_ERRNOS:
            return True
        if any(text in str(current) for text in _OUT_OF_SPACE_TEXTS):
            return True
        current = current.__cause__ or current.__context__
    if path is None or not isinstance(exc, Exception) or isinstance(exc, UserError):
        return False  # an interruption, or a mistake the user is told about as it is
    free = free_bytes(path)
    return free is not None and free < NEARLY_FULL_BYTES


def format_bytes(count: int | float) -> str:
    """``1536`` -> ``"1.5 kB"``: sizes in messages, in powers of 1000 as ``df -H`` shows them."""
    value = float(count)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def out_of_space(path: str | Path, what: str, *, needed: str, kept: str) -> OutOfSpaceError:
    """The one line for a write of ``what`` into ``path`` that ran out of space.

    :param needed: what the write needs, in words with a size (``"about 1.2 GB, the size of the
        last checkpoint"``).
    :param kept: what survived and what to do next.
    """
    free = free_bytes(path)
    available = f"{format_bytes(free)} free there" if free is not None else "free space unknown"
    return OutOfSpaceError(f"{path}: out of disk space writing {what} (needs {needed}; {available}); {kept}")


def folder_bytes(path: str | Path) -> int:
    """The bytes of the files under ``path`` (0 when it is missing); links are not followed."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total
