"""Per-sample tensors in safetensors shards: written once in order, read memory-mapped by position or id.

The storage under :mod:`qvl.features` (hidden states) and :mod:`qvl.prepared` (decoded, resized
samples): many small arrays, written sequentially into a folder that
:func:`qvl.build.build_directory` then renames into place, and read back at random by DataLoader
workers. safetensors maps each shard read-only, so workers share the pages instead of copying
them, and nothing is unpickled on read. Shards hold ``shard_size`` samples, so a writer never
keeps more than one shard in memory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

INDEX = "index.json"


class ShardWriter:
    """Append samples (a mapping of name -> tensor or numpy array, plus JSON metadata); then close."""

    def __init__(self, folder: str | Path, shard_size: int = 1024):
        self.folder = Path(folder)
        self.shard_size = shard_size
        self.ids: list[str] = []
        self.meta: list[Any] = []
        self.keys: list[str] | None = None
        self.shards: list[str] = []
        self.nbytes = 0
        self._pending: dict[str, Any] = {}

    def add(self, sample_id: str, tensors: Mapping[str, Any], meta: Any = None) -> None:
        import numpy as np
        import torch

        position = len(self.ids)
        if self.keys is None:
            self.keys = sorted(tensors)
        elif sorted(tensors) != self.keys:
            raise ValueError(f"sample {sample_id!r} has tensors {sorted(tensors)}; earlier samples had {self.keys}")
        for key, value in tensors.items():
            tensor = torch.from_numpy(np.array(value, copy=True, order="C")) if isinstance(value, np.ndarray) else value
            self._pending[f"{position}.{key}"] = tensor.detach().contiguous().cpu()
        self.ids.append(str(sample_id))
        self.meta.append(meta)
        if len(self.ids) % self.shard_size == 0:
            self._flush()

    def _flush(self) -> None:
        from safetensors.torch import save_file

        if not self._pending:
            return
        name = f"shard-{len(self.shards):05d}.safetensors"
        save_file(self._pending, str(self.folder / name))
        self.nbytes += (self.folder / name).stat().st_size
        self.shards.append(name)
        self._pending = {}

    def close(self, **info: Any) -> None:
        """Write the last shard and the index (ids, keys, shards, metadata, and ``info``)."""
        self._flush()
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("sample ids in a shard store must be unique")
        index = {"ids": self.ids, "keys": self.keys or [], "shards": self.shards, "shard_size": self.shard_size,
                 "meta": self.meta, **info}
        (self.folder / INDEX).write_text(json.dumps(index), encoding="utf-8")


class ShardStore(Sequence):
    """A written shard folder: ``store[i]`` or ``store["id"]`` gives that sample's tensors."""

    kind = "shard store"

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / INDEX).read_text(encoding="utf-8"))
        self.index = index
        self.ids: list[str] = index["ids"]
        self.keys: list[str] = index["keys"]
        self.meta: list[Any] = index.get("meta") or [None] * len(self.ids)
        self._shards: list[str] = index["shards"]
        self._shard_size: int = index.get("shard_size", 1024)
        self._position = {sample_id: i for i, sample_id in enumerate(self.ids)}
        self._open: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # open shard handles are not picklable; a DataLoader worker reopens its own
        return {**self.__dict__, "_open": {}}

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, sample_id: object) -> bool:
        return sample_id in self._position

    def position(self, key: int | str) -> int:
        if isinstance(key, str):
            try:
                return self._position[key]
            except KeyError:
                raise KeyError(f"{key!r} is not in the {self.kind} {self.folder}") from None
        if not -len(self.ids) <= key < len(self.ids):
            raise IndexError(f"sample {key} of a store of {len(self.ids)} ({self.folder})")
        return key % len(self.ids)

    def __getitem__(self, key: int | str) -> dict[str, Any]:  # type: ignore[override]
        from safetensors import safe_open

        position = self.position(key)
        shard = position // self._shard_size
        handle = self._open.get(shard)
        if handle is None:
            handle = self._open[shard] = safe_open(str(self.folder / self._shards[shard]), framework="pt")
        return {name: handle.get_tensor(f"{position}.{name}") for name in self.keys}

    def get(self, keys: Sequence[int | str]) -> list[dict[str, Any]]:
        return [self[key] for key in keys]
