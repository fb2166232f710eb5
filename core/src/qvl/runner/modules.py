"""The module the runner trains: backbone + head, whose forward is the task's ``loss`` hook.

The loss hook runs *inside* ``forward`` so that DistributedDataParallel sees the whole forward
pass (gradient synchronisation) and accelerate's autocast covers it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class TaskModule(torch.nn.Module):
    def __init__(self, backbone_model: torch.nn.Module, head: torch.nn.Module | None,
                 compute_loss: Callable[..., dict[str, Any]]):
        super().__init__()
        self.backbone_model = backbone_model
        self.head = head
        self._compute_loss = compute_loss

    def forward(self, batch: dict[str, Any], step: int, max_steps: int) -> dict[str, Any]:
        return self._compute_loss(head=self.head, batch=batch, step=step, max_steps=max_steps)


class CollateWithIds:
    """Wraps a task's collator so the runner keeps each batch's sample ids beside its tensors."""

    def __init__(self, collate: Callable[[list[dict[str, Any]]], dict[str, Any]]):
        self.collate = collate

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        return {"inputs": self.collate(samples), "ids": [s.get("id") for s in samples]}


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
