"""Build a directory once, atomically, with a marker, under a file lock.

Everything qvl writes as a folder (synthetic data sets, converted data, feature caches, the
embedded backbones) goes through :func:`build_directory`:

* the content is written into a hidden temporary sibling, the marker file ``.qvl.json`` (what
  wrote it, its fingerprint) is written last, and the folder is renamed into place, so a killed
  build never leaves a folder that looks complete;
* a folder is only ever replaced when it carries that marker: a non-empty folder without it
  belongs to the user and is refused with a :class:`~qvl.errors.UserError`;
* a lock file beside the target makes two processes (or two ranks of one launch) asking for the
  same folder build it once: the first builds, the others wait and reuse it.

``filelock`` (already a dependency of transformers and huggingface_hub) provides the lock, the
same one the Hugging Face cache uses.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from qvl.errors import UserError

MARKER = ".qvl.json"
TMP_TAG = ".qvl-tmp-"
OLD_TAG = ".qvl-old-"
PARTIAL_TAG = ".qvl-partial-"


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """The marker of a folder qvl wrote, or ``None`` (no marker, or an unreadable one)."""
    marker = Path(path) / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_marker(path: str | Path, kind: str, **fields: Any) -> None:
    """Write (atomically) the marker that says qvl owns ``path``; for folders built in place."""
    path = Path(path)
    record = {"kind": kind, "writer": f"qvl {_version()}", "created": time.time(), **fields}
    tmp = path / f"{MARKER}.tmp"
    tmp.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
    os.replace(tmp, path / MARKER)


def check_writable(path: str | Path, hint: str = "choose another folder") -> None:
    """Refuse a non-empty folder that qvl did not write (no marker): it belongs to the user."""
    path = Path(path)
    if path.is_file():
        raise UserError(f"{path}: is a file, not a folder; {hint}")
    if path.is_dir() and read_marker(path) is None and any(path.iterdir()):
        raise UserError(f"{path}: the folder is not empty and was not written by qvl (no {MARKER}); "
                        f"nothing was changed; {hint}")


def build_directory(
    target: str | Path,
    build: Callable[[Path], Any],
    *,
    kind: str,
    fingerprint: Mapping[str, Any] | str | None = None,
    force: bool = False,
    hint: str = "choose another folder",
    info: Mapping[str, Any] | None = None,
    announce: str | None = None,
    resume: bool = False,
) -> Path:
    """Make ``target`` hold what ``build(tmp_dir)`` writes, built at most once.

    :param target: the folder to create or replace.
    :param build: writes the content into the empty folder it is given.
    :param kind: what the folder is (``"dataset"``, ``"features"``, ``"backbone"``...), recorded.
    :param fingerprint: what the content depends on (JSON-serialisable). An existing marked folder
        with the same fingerprint is reused; a different one is rebuilt and replaced.
    :param force: rebuild even when the fingerprint matches (``make-data`` asked explicitly).
    :param hint: the end of the error when ``target`` is a user's non-empty folder.
    :param info: extra fields recorded in the marker (the config that produced it, counts).
    :param announce: printed to stderr when a build actually starts (not when the folder is reused).
    :param resume: for long builds that write their content in finished pieces: the temporary
        folder is named after the fingerprint and kept when the build fails or is killed, so the
        next build with the same fingerprint gets it back, pieces and all (``build`` must then
        reuse what it finds complete and redo the rest). A different fingerprint discards it.
    :returns: ``target``.
    :raises UserError: ``target`` exists, is not empty and has no qvl marker.
    """
    from filelock import FileLock

    target = Path(target).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    wanted = _canonical(fingerprint)
    with FileLock(str(target.parent / f".{target.name}.qvl-lock")):
        check_writable(target, hint)
        existing = read_marker(target) if target.is_dir() else None
        if existing is not None and not force and existing.get("fingerprint") == wanted:
            return target
        partial = target.parent / f".{target.name}{PARTIAL_TAG}{_digest(wanted)}" if resume else None
        _remove_leftovers(target, keep=partial)
        if announce:
            print(announce, file=sys.stderr)
        if partial is not None:
            partial.mkdir(exist_ok=True)
            tmp = partial
        else:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_TAG}", dir=target.parent))
        try:
            build(tmp)
            record = {"kind": kind, "writer": f"qvl {_version()}", "created": time.time(),
                      "fingerprint": wanted, **(dict(info) if info else {})}
            (tmp / MARKER).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
            _swap_in(tmp, target)
        except BaseException:
            if partial is None:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def remove_owned(path: str | Path) -> None:
    """Delete a folder only if qvl wrote it (it has the marker); anything else is refused."""
    path = Path(path)
    if not path.exists():
        return
    if read_marker(path) is None:
        raise UserError(f"{path}: not removed, it was not written by qvl (no {MARKER})")
    old = path.with_name(f".{path.name}{OLD_TAG}{os.getpid()}-{time.time_ns()}")
    os.replace(path, old)
    shutil.rmtree(old, ignore_errors=True)


def _swap_in(tmp: Path, target: Path) -> None:
    """Rename the finished build into place; a previous marked build is moved aside first."""
    if target.is_dir():
        if read_marker(target) is None:  # an empty folder the user made for us: fill it
            target.rmdir()
        else:
            old = target.with_name(f".{target.name}{OLD_TAG}{os.getpid()}-{time.time_ns()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
            return
    os.replace(tmp, target)


def _remove_leftovers(target: Path, keep: Path | None = None) -> None:
    """Temporary and set-aside folders of builds that were killed (only ours, by name, under the
    lock), except ``keep``: the resumable build of the wanted fingerprint."""
    for pattern in (f".{target.name}{TMP_TAG}*", f".{target.name}{OLD_TAG}*", f".{target.name}{PARTIAL_TAG}*"):
        for leftover in target.parent.glob(pattern):
            if leftover.is_dir() and leftover != keep:
                shutil.rmtree(leftover, ignore_errors=True)


def _digest(fingerprint: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]


def _canonical(fingerprint: Mapping[str, Any] | str | None) -> Any:
    return json.loads(json.dumps(fingerprint, sort_keys=True, default=str))


def _version() -> str:
    from qvl import __version__

    return __version__


@attrs.frozen
class SyntheticData:
    """A task's generated data set: where it lives in the cache and how to write it.

    :ivar key: the folder name under ``qvl.cache_dir() / "datasets"``; should change with the settings.
    :ivar fingerprint: what the content depends on (the generator's settings and version).
    :ivar write: fills the empty folder it is given.
    :ivar plugin: recorded in the marker, and the prefix of the line printed when it is written.
    :ivar description: what is written, for that line (``"the synthetic OCID-Grasp data set"``).
    """

    key: str
    fingerprint: Mapping[str, Any]
    write: Callable[[Path], Any]
    plugin: str
    description: str


def data_folder(data_dir: str, synthetic: SyntheticData, *, create: bool) -> Path:
    """The folder a task reads: ``task.data_dir`` when the user set one (never written to here),
    else the synthetic data set in the cache, written once when ``create``."""
    from qvl.cache import cache_dir

    if data_dir:
        return Path(data_dir).expanduser()
    root = cache_dir() / "datasets" / synthetic.key
    return write_synthetic(root, synthetic) if create else root


def write_synthetic(root: str | Path, synthetic: SyntheticData) -> Path:
    """Write the synthetic data set into ``root`` (``make-data``; reused while its fingerprint holds).

    Only a folder qvl wrote is ever replaced; a user's non-empty folder is refused untouched.
    """
    return build_directory(root, synthetic.write, kind="dataset", fingerprint=dict(synthetic.fingerprint),
                           hint="choose another task.data_dir", info={"plugin": synthetic.plugin},
                           announce=f"{synthetic.plugin}: writing {synthetic.description} into {root}")
