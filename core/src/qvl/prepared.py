"""Prepared samples: the deterministic part of reading a data set, done once and kept on disk.

Decoding a PNG or a video frame and resizing it to the size a task works at costs the same every
epoch; on a small model it is a large part of every training step. :func:`prepare_samples` runs a
task's ``prepare(i)`` over a data set once, stores the arrays it returns (uint8 images, label
arrays) in memory-mapped safetensors shards (:mod:`qvl.shards`) and its JSON metadata in the index,
under a fingerprint of the source files and the preparation settings: a changed file or setting
gives a new folder, never a stale one. Random augmentation stays per step, on the cached arrays.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from qvl.data.digest import digest, files_fingerprint  # files_fingerprint: importable from here as before
from qvl.shards import ShardStore, ShardWriter

FORMAT_VERSION = 1
Prepare = Callable[[int], tuple[Mapping[str, Any], Mapping[str, Any]]]


class PreparedSamples(ShardStore):
    """``samples[i]``: the metadata of sample ``i`` with its arrays (numpy, read-only views)."""

    kind = "prepared-sample cache"

    def __getitem__(self, key: int | str) -> dict[str, Any]:  # type: ignore[override]
        position = self.position(key)
        arrays = {name: tensor.numpy() for name, tensor in super().__getitem__(position).items()}
        return {**(self.meta[position] or {}), **arrays}


def prepare_samples(
    count: int,
    prepare: Prepare,
    *,
    fingerprint: Mapping[str, Any],
    name: str,
    root: str | Path | None = None,
    progress: bool = True,
) -> PreparedSamples:
    """Run ``prepare(i)`` for ``i`` in ``range(count)`` once and return the stored results.

    :param prepare: returns ``(arrays, meta)`` for sample ``i``: numpy arrays (the same names for
        every sample) and a JSON-serialisable dict, which must hold the sample's ``"id"``.
    :param fingerprint: everything the result depends on: :func:`files_fingerprint` of the source
        files, the preparation settings, a version of the ``prepare`` code.
    :param name: what is prepared (``"grasp-train"``), for the progress bar and the folder name.
    :param root: where caches live (default ``qvl.cache_dir() / "prepared"``).
    """
    from tqdm.auto import tqdm

    from qvl.build import build_directory
    from qvl.cache import cache_dir

    wanted = {"format": FORMAT_VERSION, "count": count, **dict(fingerprint)}
    key = digest(wanted)
    target = Path(root) if root is not None else cache_dir() / "prepared"
    target = target / f"{name}-{key}"

    def build(out: Path) -> None:
        writer = ShardWriter(out)
        for index in tqdm(range(count), desc=f"prepare {name}", unit="sample", disable=not progress,
                          dynamic_ncols=True):
            arrays, meta = prepare(index)
            if "id" not in meta:
                raise ValueError(f"prepare({index}) of {name!r} must return the sample's 'id' in its metadata")
            writer.add(str(meta["id"]), arrays, dict(meta))
        writer.close(name=name)
        print(f"qvl: prepared {count} samples ({name}): {writer.nbytes / 1e6:.1f} MB in {target}", file=sys.stderr)

    build_directory(target, build, kind="prepared", fingerprint=wanted, info={"samples": count},
                    hint="set another QVL_CACHE")
    return PreparedSamples(target)


def size_on_disk(samples: PreparedSamples) -> int:
    """Bytes of a prepared folder's shards (printed when it is built)."""
    return sum(p.stat().st_size for p in Path(samples.folder).glob("*.safetensors"))

