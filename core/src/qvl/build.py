"""Build a directory once, atomically, with a marker, under a file lock.

Everything qvl writes as a folder (synthetic data sets, converted data, feature caches, the
embedded backbones) goes through :func:`build_directory`:

* the content is written into a hidden temporary sibling, the marker file ``.qvl.json`` (what
  wrote it, its fingerprint) is written last, and the folder is renamed into place, so a killed
  build never leaves a folder that looks complete;
* a folder is only ever replaced when it carries that marker: a non-empty folder without it
  belongs to the user and is refused with a :class:`~qvl.errors.UserError`;
* the marker lists what the build wrote (every file's size and modification time, every
  folder), so a marked folder that has gained or changed files since (a user's labels, notes) is
  refused too instead of being swapped out with them;
* a disk that fills up during a build is a :class:`~qvl.errors.OutOfSpaceError` (one line, exit 2):
  the temporary folder is removed and the previous build stays;
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

from qvl.data import digest, write_json
from qvl.errors import UserError, format_bytes, free_bytes, is_out_of_space, out_of_space

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
    write_json(path / MARKER, record, indent=1, default=str)


def check_writable(path: str | Path, hint: str = "choose another folder") -> None:
    """Refuse a non-empty folder that qvl did not write (no marker): it belongs to the user."""
    path = Path(path)
    if path.is_file():
        raise UserError(f"{path}: is a file, not a folder; {hint}")
    if path.is_dir() and read_marker(path) is None and any(path.iterdir()):
        raise UserError(f"{path}: the folder is not empty and was not written by qvl (no {MARKER}); "
                        f"nothing was changed; {hint}")


def written_files(folder: str | Path) -> dict[str, Any]:
    """What is in ``folder`` (the marker aside): ``{"files": {path: [size, mtime_s]}, "folders": [path]}``
    with ``/``-separated paths relative to it. Recorded in the marker of a build, it tells qvl's
    files from those a user adds later. Whole seconds, because a copy to another file system may
    keep no finer modification times."""
    root = Path(folder)
    files: dict[str, list[int]] = {}
    folders: list[str] = []
    pending = [root]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                relative = Path(entry.path).relative_to(root).as_posix()
                if relative == MARKER or relative.startswith(f".{MARKER}.tmp-"):  # the marker, written beside
                    continue
                if entry.is_dir(follow_symlinks=False):
                    folders.append(relative)
                    pending.append(Path(entry.path))
                else:
                    stat = entry.stat(follow_symlinks=False)
                    files[relative] = [stat.st_size, int(stat.st_mtime)]
    return {"files": files, "folders": sorted(folders)}


def foreign_entries(folder: str | Path, marker: Mapping[str, Any]) -> tuple[list[str], list[str]] | None:
    """``(added, changed)``: what in a marked ``folder`` qvl did not write (a folder is listed once,
    with a trailing ``/``, not its content) and which of qvl's files were modified since; ``None``
    when the marker lists no files (a folder built before qvl recorded them)."""
    recorded = marker.get("written")
    if not isinstance(recorded, Mapping):
        return None
    known_files = recorded.get("files") or {}
    known_folders = set(recorded.get("folders") or ())
    current = written_files(folder)
    added = [f"{path}/" for path in current["folders"]
             if path not in known_folders and path.rpartition("/")[0] in known_folders | {""}]
    changed = []
    for path, size_mtime in current["files"].items():
        if path not in known_files:
            if path.rpartition("/")[0] in known_folders | {""}:  # not inside a folder listed already
                added.append(path)
        elif list(known_files[path]) != size_mtime:
            changed.append(path)
    return sorted(added), sorted(changed)


def check_replaceable(path: str | Path, hint: str = "choose another folder") -> None:
    """Refuse to replace a folder qvl wrote once someone added or changed files in it; they are
    not qvl's to delete. A folder qvl did not write at all is refused by :func:`check_writable`."""
    path = Path(path)
    marker = read_marker(path) if path.is_dir() else None
    if marker is None:
        return
    found = foreign_entries(path, marker)
    if found is None:
        raise UserError(f"{path}: written by an earlier qvl that did not record its files, so files added "
                        f"since cannot be told from its own; nothing was changed; delete the folder if nothing "
                        f"in it is yours, or {hint}")
    added, changed = found
    if not added and not changed:
        return
    what = []
    if added:
        what.append(f"{_count(added, 'entry', 'entries')} qvl did not write ({_some(added)})")
    if changed:
        what.append(f"{_count(changed, 'file', 'files')} of its own changed since ({_some(changed)})")
    raise UserError(f"{path}: a new build would replace this folder qvl wrote, but it holds "
                    f"{' and '.join(what)}; nothing was changed; move those files out of it, or {hint}")


def _count(items: list[str], one: str, many: str) -> str:
    return f"{len(items)} {one if len(items) == 1 else many}"


def _some(paths: list[str], shown: int = 3) -> str:
    return ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


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
    :raises UserError: ``target`` exists, is not empty and has no qvl marker; or it has one but
        would be replaced while it holds files qvl did not write (or changed ones).
    :raises OutOfSpaceError: the disk filled up; the temporary folder is gone, ``target`` unchanged.
    """
    from filelock import FileLock

    target = Path(target).expanduser()
    wanted = _canonical(fingerprint)
    # Refuse before taking the lock, so that a refusal leaves nothing behind, not even a lock file.
    _check_build(target, wanted, force, hint)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.qvl-lock")):
        _check_build(target, wanted, force, hint)  # again: another process may have built meanwhile
        existing = read_marker(target) if target.is_dir() else None
        if existing is not None and not force and existing.get("fingerprint") == wanted:
            return target
        partial = target.parent / f".{target.name}{PARTIAL_TAG}{digest(wanted)}" if resume else None
        _remove_leftovers(target, keep=partial)
        if announce:
            print(announce, file=sys.stderr)
        if partial is not None:
            partial.mkdir(exist_ok=True)
            tmp = partial
        else:
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{TMP_TAG}", dir=target.parent))
        free_at_start = free_bytes(tmp)
        try:
            build(tmp)
            record = {"kind": kind, "writer": f"qvl {_version()}", "created": time.time(),
                      "fingerprint": wanted, **(dict(info) if info else {}), "written": written_files(tmp)}
            (tmp / MARKER).write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")
            _swap_in(tmp, target)
        except BaseException as exc:
            full = is_out_of_space(exc, tmp)  # asked before the clean-up frees the space again
            if partial is None:
                shutil.rmtree(tmp, ignore_errors=True)
            if full:
                kept = (f"the finished part stays in {partial} for the next try" if partial is not None
                        else "the unfinished copy was removed")
                previous = "the previous build is kept" if existing is not None else "nothing else was changed"
                raise out_of_space(target, f"the {kind} folder", needed=_more_than(free_at_start),
                                   kept=f"{kept}, {previous}; free some space and run again") from exc
            raise
    return target


def _more_than(free_at_start: int | None) -> str:
    """What a write that filled the disk needed: more than was free when it started."""
    if free_at_start is None:
        return "more space"
    return f"more than the {format_bytes(free_at_start)} free when it started"


def _check_build(target: Path, wanted: Any, force: bool, hint: str) -> None:
    """Refuse a user's folder, and a folder qvl wrote that this build would replace while it holds
    files qvl did not write."""
    check_writable(target, hint)
    existing = read_marker(target) if target.is_dir() else None
    if existing is not None and (force or existing.get("fingerprint") != wanted):
        check_replaceable(target, hint)


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


@attrs.frozen
class SyntheticGenerator:
    """A plugin's generator of synthetic data in its real format, declared once.

    ``module`` (imported only when data is needed, so listing plugins stays fast) defines
    ``dataset_key(settings, seed)`` (the cache folder's name), ``fingerprint(settings, seed)``,
    ``summary(settings)`` (what was written, in a few words) and the function named ``write``,
    ``write(out, settings, seed)``; ``settings`` is ``task.synthetic``.

    :ivar plugin: recorded in the marker, and the prefix of the line printed when data is written.
    :ivar description: what is written (``"the synthetic OCID-Grasp data set"``).
    """

    module: str
    plugin: str
    description: str
    write: str = "write"

    def data(self, config: Any) -> SyntheticData:
        import importlib

        generator = importlib.import_module(self.module)
        settings, seed = config.task.synthetic, config.seed
        write = getattr(generator, self.write)
        return SyntheticData(key=generator.dataset_key(settings, seed),
                             fingerprint=generator.fingerprint(settings, seed),
                             write=lambda out: write(out, settings, seed), plugin=self.plugin,
                             description=self.description)

    def root(self, config: Any, *, create: bool) -> Path:
        """``task.repo_id`` (a hub data set) or ``task.data_dir`` when the task has and sets one, else the
        synthetic data set in the cache (written if ``create``)."""
        return data_folder(config.task.data_dir, self.data(config), create=create,
                           repo_id=getattr(config.task, "repo_id", ""), revision=getattr(config.task, "revision", ""))

    def make(self, config: Any) -> Path:
        """Stage ``make-data``: write the data set into ``task.data_dir`` (else the cache); its folder."""
        import importlib

        refuse_hub_target(config)
        root = write_synthetic(self.root(config, create=False), self.data(config))
        print(f"{self.plugin}: {importlib.import_module(self.module).summary(config.task.synthetic)}: {root}")
        if config.task.data_dir:
            print(f"  train on it with: --set task.data_dir={str(root)!r}")
        return root


def data_folder(data_dir: str, synthetic: SyntheticData, *, create: bool, repo_id: str = "",
                revision: str = "") -> Path:
    """The folder a task reads: the hub data set ``repo_id`` (at ``revision``) through the Hugging Face
    cache, else ``task.data_dir`` when the user set one (neither is written to here), else the synthetic
    data set in the cache, written once when ``create``."""
    from qvl.cache import cache_dir

    if repo_id:
        from qvl.lerobot.hub import hub_dataset  # the module, not the package: qvl.lerobot.append uses qvl.build

        return hub_dataset(repo_id, revision)
    if data_dir:
        return Path(data_dir).expanduser()
    root = cache_dir() / "datasets" / synthetic.key
    return write_synthetic(root, synthetic) if create else root


def refuse_hub_target(config: Any) -> None:
    """``make-data`` writes the synthetic data set; with ``task.repo_id`` set there is nothing to write."""
    repo_id = getattr(config.task, "repo_id", "")
    if repo_id:
        raise UserError(f"make-data writes the synthetic data set, but task.repo_id = {repo_id!r} names a hub data "
                        "set to read: train on it directly, or unset task.repo_id")


def write_synthetic(root: str | Path, synthetic: SyntheticData) -> Path:
    """Write the synthetic data set into ``root`` (``make-data``; reused while its fingerprint holds).

    Only a folder qvl wrote is ever replaced; a user's non-empty folder is refused untouched.
    """
    return build_directory(root, synthetic.write, kind="dataset", fingerprint=dict(synthetic.fingerprint),
                           hint="choose another task.data_dir", info={"plugin": synthetic.plugin},
                           announce=f"{synthetic.plugin}: writing {synthetic.description} into {root}")
