"""Padding-free SFT batches: the rows of a padded batch laid end to end in one row, no padding token.

What transformers' ``DataCollatorWithFlattening`` and TRL's ``padding_free`` do, done on the batch the
chat collators already made, at the loss: a padded row costs the padding's share of every linear
layer, and SFT rows vary in length (one clip or two, a short answer or a long one). Each sequence
keeps its own positions, so the model sees it as if it were alone:

* Qwen-VL's text model reads a ``[4, 1, T]`` ``position_ids``: row 0 the text positions, which start
  again at 0 for each sequence (transformers' masking then builds the block-diagonal causal mask for
  eager / sdpa / flex attention, and flash attention derives ``cu_seqlens`` from them), rows 1-3 the
  multimodal rotary positions, computed by the model's own ``get_rope_index`` on the padded batch;
* vision inputs (``pixel_values``, grids) are unchanged: their tokens keep their order.

Done at the loss rather than in the collator because the rotary positions are the model's to
compute, and the collator (in a DataLoader worker) has no model.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from typing import Any

IGNORE_INDEX = -100

# Families whose text model takes the [4, B, S] position ids (text row first) and whose equality to
# padded batches is tested (core/tests/test_padding_free.py); others train padded.
PACKABLE_MODEL_TYPES = frozenset({"qwen2_5_vl", "qwen3_vl"})
_ROW_KEYS = ("input_ids", "attention_mask", "labels", "mm_token_type_ids")


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def supports_padding_free(model: Any) -> bool:
    """Whether :func:`padding_free_batch` packs for this model (a Qwen-VL family it is tested on)."""
    base = _base(model)
    return (getattr(base.config, "model_type", None) in PACKABLE_MODEL_TYPES
            and callable(getattr(getattr(base, "model", None), "get_rope_index", None)))


def use_padding_free(model: Any, setting: bool | str) -> bool:
    """Whether to pack for ``model`` under ``setting`` (``train.padding_free``): ``True`` wherever
    :func:`supports_padding_free` (a warning, once, where not), ``"auto"`` only where the attention has a
    variable-length kernel (flash attention): sdpa and eager attend over the whole packed row under a
    block-diagonal mask, which on CPU costs more than the padding saves (benchmarks/bench_padding_free.py).
    """
    if setting is False:
        return False
    if not supports_padding_free(model):
        if setting is True:
            _warn_unsupported(getattr(_base(model).config, "model_type", type(model).__name__))
        return False
    if setting == "auto":
        return str(getattr(_base(model).config, "_attn_implementation", "")).startswith("flash_attention")
    return True


@functools.cache
def _warn_unsupported(model_type: str) -> None:
    families = ", ".join(sorted(PACKABLE_MODEL_TYPES))
    warnings.warn(f"train.padding_free: {model_type} is not a family qvl packs ({families}); its batches stay padded",
                  stacklevel=3)


def padding_free_batch(model: Any, batch: dict[str, Any]) -> dict[str, Any]:
    """``batch`` (a padded batch with ``input_ids``, ``attention_mask`` and optionally ``labels``) as one
    packed row, for ``model``'s forward; the batch itself when it has no padding or the model is not
    one :func:`supports_padding_free` names.

    Labels: each sequence's first token is ignored (it would be predicted from the previous
    sequence's last token); the chat collators never label it anyway.
    """
    import torch

    mask = batch.get("attention_mask")
    if mask is None or mask.shape[0] < 2 or bool(mask.all()) or not supports_padding_free(model):
        return batch
    inner = _base(model).model
    accepted = inspect.signature(inner.get_rope_index).parameters
    extra = {name: batch[name] for name in accepted if name not in ("input_ids", "attention_mask") and name in batch}
    rope_positions, _ = inner.get_rope_index(batch["input_ids"], attention_mask=mask, **extra)
    keep = mask.bool()
    text_positions = mask.long().cumsum(-1) - 1
    packed = {key: value for key, value in batch.items() if key not in _ROW_KEYS and key != "position_ids"}
    for key in _ROW_KEYS:
        if key in batch:
            packed[key] = batch[key][keep][None]
    if "labels" in packed:
        packed["labels"] = packed["labels"].masked_fill((text_positions[keep] == 0)[None], IGNORE_INDEX)
    del packed["attention_mask"]  # None: the masking reads the sequences from the text positions
    packed["position_ids"] = torch.cat([text_positions[keep][None, None],
                                        rope_positions[:, keep][:, None].to(text_positions.dtype)])
    packed["use_cache"] = False  # a cache turns transformers' packed-sequence masking off
    return packed
