"""The K head and the start/end heatmap head, over time-aligned backbone features ``[B, T, D]``.

The heatmap head is a stack of residual dilated temporal convolutions (as in MS-TCN's stages), so
each frame's boundary score sees a receptive field of ``1 + 2 * (2**layers - 1)`` frames: enough
to compare what happens before and after a frame. The K head reads the temporal features pooled
by mean and max (the count depends on the whole episode).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


class _Residual(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(F.gelu(self.conv(x)))


class SegmentHeads(nn.Module):
    """``forward(features [B, T, D]) -> {"boundary_logits": [B, 2, T], "count_logits": [B, k_max + 1]}``."""

    def __init__(self, hidden_size: int, channels: int, layers: int, k_max: int) -> None:
        super().__init__()
        self.project = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, channels))
        self.temporal = nn.Sequential(*[_Residual(channels, 2 ** i) for i in range(layers)])
        self.boundary = nn.Conv1d(channels, 2, 1)
        self.count = nn.Sequential(nn.Linear(2 * channels, channels), nn.GELU(), nn.Linear(channels, k_max + 1))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.temporal(self.project(features).transpose(1, 2))  # [B, C, T]
        pooled = torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)
        return {"boundary_logits": self.boundary(x), "count_logits": self.count(pooled)}


def heatmap_loss(logits: torch.Tensor, targets: torch.Tensor, kind: str, gamma: float = 2.0) -> torch.Tensor:
    """Binary cross-entropy against the Gaussian soft labels, or its focal form.

    ``focal`` scales each term by ``|target - p| ** gamma`` (the soft-label focal loss of
    Generalized Focal Loss, Li et al. 2020): the many easy background frames stop dominating, and
    with soft targets the weight vanishes where the prediction already equals the label.
    """
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    if kind == "focal":
        bce = bce * (targets - torch.sigmoid(logits)).abs().pow(gamma)
    return bce.mean()


def lm_weight(step: int, max_steps: int, heads_first: float, ramp: float) -> float:
    """The curriculum's factor on the LM term: 0 for the first ``heads_first`` of the steps, then a
    linear ramp to 1 over ``ramp`` of them."""
    begin = heads_first * max_steps
    if step < begin:
        return 0.0
    width = ramp * max_steps
    return 1.0 if width <= 0 else min(1.0, (step - begin + 1) / width)


def head_outputs(heads: Any, features: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the heads in float32 (they are small; the backbone may compute in half precision)."""
    return heads(features.float())
