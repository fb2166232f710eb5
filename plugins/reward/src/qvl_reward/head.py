"""The reward head: the hidden state of each sample's last real token, through a linear layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's last real token, right for both paddings.

    The seed's ``attention_mask.sum(1) - 1`` is the last real token only under right padding; under
    left padding it points into the middle of the sequence.
    """
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device).expand_as(attention_mask)
    return torch.where(attention_mask.bool(), positions, torch.full_like(positions, -1)).max(dim=1).values


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, last_token_index(attention_mask)]


class RewardHead(nn.Module):
    """Linear classifier over pooled hidden states, in the backbone's dtype (bf16 on a GPU)."""

    def __init__(self, hidden_size: int, num_classes: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.classifier = nn.Linear(hidden_size, num_classes, dtype=dtype)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(pooled.to(self.classifier.weight.dtype))


def pooled_states(model: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Last-layer hidden state at each row's last real token.

    ``logits_to_keep=1`` keeps the LM head to one position: its 151,936-wide output is not used.
    """
    outputs = model(**batch, output_hidden_states=True, logits_to_keep=1)
    return last_token_pool(outputs.hidden_states[-1], batch["attention_mask"])


class FeatureHead(nn.Module):
    """The cached mode's head: layer norm, then an MLP (``hidden`` > 0) or a linear layer.

    The norm matters because frozen features are not scaled for the head: a random or
    pretrained backbone's hidden states differ in scale by orders of magnitude between
    dimensions, which a lone linear layer trained with one learning rate handles poorly.
    """

    def __init__(self, width: int, num_classes: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        if hidden:
            self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, num_classes))
        else:
            self.mlp = nn.Linear(width, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(features.float()))


def logits_of(backbone: Any, head: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """The head's logits for a batch of either mode: cached feature vectors, or model inputs."""
    from qvl_reward.collate import FEATURES_KEY, FRAMES_KEY, LABELS_KEY

    if FEATURES_KEY in batch:
        return head(batch[FEATURES_KEY]).float()
    inputs = {k: v for k, v in batch.items() if k not in (LABELS_KEY, FRAMES_KEY)}
    return head(pooled_states(backbone.model, inputs)).float()
