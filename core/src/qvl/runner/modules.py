"""The module the runner trains: backbone + head, whose forward is the task's ``loss`` hook.

The loss hook runs *inside* ``forward`` so that DistributedDataParallel sees the whole forward
pass (gradient synchronisation) and accelerate's autocast covers it.
"""

from __future__ import annotations

import contextlib
import inspect
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch


class TaskModule(torch.nn.Module):
    """``backbone_model`` is None when the backbone trains nothing: it then stays outside DDP."""

    def __init__(self, backbone_model: torch.nn.Module | None, head: torch.nn.Module | None,
                 compute_loss: Callable[..., dict[str, Any]]):
        super().__init__()
        self.backbone_model = backbone_model
        self.head = head
        self._compute_loss = compute_loss

    def forward(self, batch: dict[str, Any], step: int, max_steps: int) -> dict[str, Any]:
        with without_kv_cache(self.backbone_model):
            return self._compute_loss(head=self.head, batch=batch, step=step, max_steps=max_steps)


@contextlib.contextmanager
def without_kv_cache(model: torch.nn.Module | None) -> Iterator[None]:
    """``use_cache = False`` in the model's configs for a training forward, as transformers' Trainer
    sets it: the forward would otherwise build a key/value cache and throw it away (and, compiled,
    recompile a layer per cache state). Restored after, so that checkpoints and generation keep it."""
    config = getattr(model, "config", None)
    parts = [p for p in (config, getattr(config, "text_config", None)) if p is not None and hasattr(p, "use_cache")]
    before = [p.use_cache for p in parts]
    for part in parts:
        part.use_cache = False
    try:
        yield
    finally:
        for part, value in zip(parts, before):
            part.use_cache = value


class IndexedSamples:
    """A view of a data set that yields ``(index, sample)``, so a batch knows which samples it holds."""

    def __init__(self, data: Sequence[Any], indices: Sequence[int] | None = None):
        self.data = data
        self.indices = list(range(len(data))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, Any]:
        index = self.indices[position]
        return index, self.data[index]


class CollateWithIds:
    """Wraps a task's collator: keeps each batch's sample ids and indices beside its tensors, and
    hands collators that take ``rng`` a generator seeded by (seed, rank, sample indices), which
    makes augmentation independent of worker count and reproducible after a resume."""

    def __init__(self, collate: Callable[..., dict[str, Any]], seed: int = 0, rank: int = 0):
        self.collate = collate
        self.seed = seed
        self.rank = rank
        try:
            self.takes_rng = "rng" in inspect.signature(collate).parameters
        except (TypeError, ValueError):  # builtins without a signature
            self.takes_rng = False

    def __call__(self, items: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
        indices = [index for index, _ in items]
        samples = [sample for _, sample in items]
        if self.takes_rng:
            import numpy as np

            seed = zlib.crc32(f"{self.seed}:{self.rank}:{','.join(map(str, indices))}".encode())
            inputs = self.collate(samples, rng=np.random.default_rng(seed))
        else:
            inputs = self.collate(samples)
        return {"inputs": inputs, "ids": [s.get("id") for s in samples], "indices": indices}


def parameter_groups(module: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms and other 1-D parameters."""
    decay, no_decay = [], []
    for _, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
