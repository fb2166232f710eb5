"""Digests that name cache folders and record what a result depends on."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def digest(value: Any, length: int = 16, *, algorithm: str = "sha256") -> str:
    """The first ``length`` hex digits of the hash of ``value``.

    ``bytes`` are hashed as they are; anything else as its canonical JSON (keys sorted, ``str()``
    of what JSON cannot hold), so equal settings give equal digests in every process. The same
    value as ``hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]``,
    which is what named qvl's cache folders before.

    :param algorithm: any name :func:`hashlib.new` knows (``"sha1"`` names some older folders).
    """
    data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True, default=str).encode()
    return hashlib.new(algorithm, data).hexdigest()[:length]


def files_fingerprint(paths: Iterable[str | Path]) -> str:
    """A digest of files' paths, sizes and modification times: changes when any file does.

    Reading every byte would cost as much as the work it saves; size and mtime are what ``make``
    and rsync trust. A missing file counts as missing, not as an error.
    """
    hashed = hashlib.sha256()
    for path in sorted(str(p) for p in paths):
        try:
            stat = os.stat(path)
            hashed.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except FileNotFoundError:
            hashed.update(f"{path}\0missing\n".encode())
    return hashed.hexdigest()


__all__ = ["digest", "files_fingerprint"]
