"""One training forward: the LM's answer loss and the heads' losses from the same backbone pass.

The backbone runs once over prompt + answer with ``output_hidden_states``; the per-frame features
are hidden states of ``task.feature_layer`` at each frame's visual tokens, mean-pooled per frame
(``qvl.features.pool_items``, the pooling of the frozen-feature cache, here with gradients). In a
causal model the answer tokens cannot change the prompt's hidden states, so these are the same
features the one-pass inference reads from its prefill.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from qvl.features import pool_items, resolve_layer, visual_items
from qvl_segment.heads import head_outputs, heatmap_loss, lm_weight

IGNORE_INDEX = -100
HEATMAP_KEY = "heatmap_targets"
COUNT_KEY = "count_targets"
SAMPLES_KEY = "segment_samples"  # what decoding and the metrics need besides tensors
EXTRA_KEYS = (HEATMAP_KEY, COUNT_KEY, SAMPLES_KEY)


def frame_features(backbone: Any, batch: dict[str, Any], hidden: torch.Tensor, frames: int) -> torch.Tensor:
    """``[B, frames, D]``: each frame's visual tokens of ``hidden`` ``[B, S, D]``, mean-pooled."""
    items = visual_items(backbone.base_model.config, batch)
    rows = []
    for row, row_items in enumerate(items):
        if len(row_items) != frames:
            raise ValueError(f"row {row} holds {len(row_items)} images; the segment task shows {frames} frames")
        rows.append(pool_items(hidden[row], row_items, "mean"))
    return torch.stack(rows)


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in batch.items() if key not in EXTRA_KEYS and key != "labels"}


def training_loss(config: Any, backbone: Any, heads: Any, batch: dict[str, Any], step: int, max_steps: int,
                  vocabulary: Sequence[int] | None = None) -> dict[str, Any]:
    """``loss`` = LM cross-entropy (times the curriculum weight) + K cross-entropy + heatmap loss.

    :param vocabulary: token ids the LM term is a softmax over (``task.loss_vocabulary =
        "answer"``: the tokens of the training answers); ``None``: the whole vocabulary.
    """
    from qvl import chat

    task = config.task
    labels = batch.get("labels")
    use_lm = task.mode != "heatmap" and labels is not None
    factor = lm_weight(step, max_steps, task.heads_first, task.lm_ramp) if task.mode == "both" else 1.0
    inputs = model_inputs(batch)
    terms: dict[str, Any] = {}
    if use_lm and vocabulary is None:
        targets = labels[:, 1:]
        positions = (targets != IGNORE_INDEX).any(dim=0).nonzero().flatten()
        output = backbone.model(**inputs, logits_to_keep=positions, output_hidden_states=heads is not None,
                                use_cache=False)
        logits = output.logits
        lm = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets[:, positions].reshape(-1),
                             ignore_index=IGNORE_INDEX)
        states = output.hidden_states
    else:
        # the trunk alone: the LM head runs on the answer vocabulary's rows only (the full head over
        # a 150-token JSON answer is most of a small model's step), or not at all
        trunk, _ = chat.language_model_parts(backbone.model)
        output = trunk(**inputs, output_hidden_states=True, use_cache=False)
        states = output.hidden_states
        lm = chat.vocabulary_cross_entropy(backbone.model, output.last_hidden_state, labels, vocabulary) \
            if use_lm else None
    total = states[-1].new_zeros((), dtype=torch.float32)
    if lm is not None:
        terms["lm"] = lm.detach()
        terms["lm_factor"] = factor
        total = total + task.lm_weight * factor * lm
    if heads is not None:
        hidden = states[resolve_layer(backbone, task.feature_layer)]
        out = head_outputs(heads, frame_features(backbone, inputs, hidden, task.num_frames))
        heat = heatmap_loss(out["boundary_logits"], batch[HEATMAP_KEY].float(), task.heatmap_loss, task.focal_gamma)
        count = F.cross_entropy(out["count_logits"], batch[COUNT_KEY])
        terms["heatmap"] = heat.detach()
        terms["count"] = count.detach()
        total = total + task.heatmap_weight * heat + task.count_weight * count
    return {"loss": total, **terms}


def answer_vocabulary(tokenizer: Any, answers: Sequence[str]) -> list[int]:
    """Every token of the training answers, plus ``<|im_end|>`` that ends them."""
    ids = {tokenizer.convert_tokens_to_ids("<|im_end|>")}
    for text in answers:
        ids.update(tokenizer.encode(text, add_special_tokens=False))
    return sorted(ids)
