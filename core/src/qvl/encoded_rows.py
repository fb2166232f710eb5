"""Chat rows tokenized once: a row's token arrays kept, each batch rebuilt from them with only its
images and clips through the processor.

When a training row never changes (no augmentation of its text or the size of its media), the chat
template, the tokenizer and the processor's expansion of each image or clip into its vision tokens
give the same arrays every epoch; on a small model they are a large part of a step that runs in the
main process (no DataLoader worker pays on 2 cores). A task keeps :func:`encode_row`'s arrays (in
:func:`qvl.prepared.prepare_samples`, about 3 KB a row) and makes each batch with
:func:`batch_from_rows`: the same batch as :func:`qvl.chat.sft_batch` (or
:func:`~qvl.chat.conversation_batch`) of the same conversations, tensor for tensor (tested on both
Qwen-VL families, with images and with clips).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qvl.chat import IGNORE_INDEX, Conversation

ROW_KEYS = {"input_ids": None, "mm_token_type_ids": 0, "labels": IGNORE_INDEX}  # per token: the padding value
MEDIA_KEYS = ("image_grid_thw", "video_grid_thw", "second_per_grid_ts")  # per image / clip


def processor_fingerprint(processor: Any, backbone_name: str) -> dict[str, Any]:
    """What a row's arrays depend on besides the row, for a cache's fingerprint: the backbone, its
    vocabulary (tokens a task added included), its chat template and how it patches images and clips."""
    patching = {}
    for name in ("image_processor", "video_processor"):
        part = getattr(processor, name, None)
        if part is not None:
            patching[name] = [type(part).__name__] + [getattr(part, key, None) for key in
                                                      ("patch_size", "merge_size", "temporal_patch_size",
                                                       "min_pixels", "max_pixels")]
    return {"backbone": backbone_name, "vocabulary": len(processor.tokenizer), "template": processor.chat_template,
            "patching": patching}


def encode_row(processor: Any, conversation: Conversation, *, labels: bool = True) -> dict[str, Any]:
    """The arrays of one conversation: its tokens (with the answer ``labels`` of
    :func:`qvl.chat.sft_batch`, or none as :func:`qvl.chat.conversation_batch`) and its media grids."""
    from qvl import chat

    make = chat.sft_batch if labels else chat.conversation_batch
    batch = make(processor, [conversation])
    arrays = {key: batch[key][0].numpy() for key in ROW_KEYS if key in batch}
    arrays.update({key: batch[key].numpy() for key in MEDIA_KEYS if key in batch})
    return arrays


def batch_from_rows(rows: Sequence[dict[str, Any]], conversations: Sequence[Conversation], processor: Any,
                    padding_side: str = "right") -> dict[str, Any]:
    """The batch of ``conversations`` from their :func:`encode_row` arrays ``rows``: the token arrays
    padded on ``padding_side``, the images and clips through the processor's image and video
    processors as :func:`qvl.chat.sft_batch` hands them over. A row whose media no longer match its
    grids (a stale cache) raises."""
    import torch

    from qvl import chat

    images, videos, video_kwargs = chat.vision_inputs(processor, conversations)
    batch: dict[str, Any] = {}
    if images is not None:
        batch.update(processor.image_processor(images=images, return_tensors="pt"))
    if videos is not None:
        batch.update(processor.video_processor(videos=videos, return_tensors="pt", **video_kwargs))
    for key in MEDIA_KEYS:
        kept = [row[key] for row in rows if key in row]
        if not kept:
            continue
        cached = np.concatenate(kept)
        if key in batch:
            if not np.array_equal(batch[key].numpy(), cached):
                raise RuntimeError(f"the rows' {key} differ from their media read now: a stale cache")
        else:
            batch[key] = torch.from_numpy(cached)
    width = max(len(row["input_ids"]) for row in rows)
    pad_id = processor.tokenizer.pad_token_id
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for key, fill in ROW_KEYS.items():
        if key not in rows[0]:
            continue
        dtype = torch.from_numpy(np.asarray(rows[0][key][:0])).dtype
        values = torch.full((len(rows), width), pad_id if fill is None else fill, dtype=dtype)
        for index, row in enumerate(rows):
            length = len(row[key])
            where = slice(width - length, width) if padding_side == "left" else slice(0, length)
            values[index, where] = torch.from_numpy(np.asarray(row[key]))
            mask[index, where] = 1
        batch[key] = values
    batch["attention_mask"] = mask
    return batch
